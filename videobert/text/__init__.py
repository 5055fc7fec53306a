"""The text side: transcripts (WebVTT, SRT, JSON, JSONL) read into timed cues, speech recognition
for videos without one (the asr stage), sentences, and WordPiece.

``transcripts`` (reading and writing), ``sentences`` (cutting words into sentences, punctuation
models), ``wordpiece`` (tokenizers), ``asr`` (recognisers), ``stage`` (the TRANSCRIPTS folder).
"""

from videobert.text.sentences import DEFAULT_MAX_WORDS, DEFAULT_PAUSE, Punctuator, label_mark, split_sentences
from videobert.text.transcripts import Cue, Word, clean_text, detect_format, read_transcript, webvtt_text, write_webvtt
from videobert.text.wordpiece import TEXT_SPECIALS, load_tokenizer, train_wordpiece

__all__ = [
    "DEFAULT_MAX_WORDS", "DEFAULT_PAUSE", "TEXT_SPECIALS", "Cue", "Punctuator", "Word", "clean_text", "detect_format",
    "label_mark", "load_tokenizer", "read_transcript", "split_sentences", "train_wordpiece", "webvtt_text", "write_webvtt",
]
