import json

import pytest

from videobert.errors import InputError
from videobert.text import (
    Cue, Word, clean_text, detect_format, read_transcript, split_sentences, train_wordpiece, webvtt_text, write_webvtt,
)

# A YouTube auto-caption file as yt-dlp saves it: header metadata, word timings as inline tags,
# rolling two-line cues that repeat the previous line, 10 ms transition cues, "[Music]".
YOUTUBE_VTT = """WEBVTT
Kind: captions
Language: en

00:00:00.000 --> 00:00:02.350 align:start position:0%
 
hi<00:00:00.480><c> everyone</c><00:00:00.960><c> welcome</c><00:00:01.500><c> back</c>

00:00:02.350 --> 00:00:02.360 align:start position:0%
hi everyone welcome back
 

00:00:02.360 --> 00:00:05.120 align:start position:0%
hi everyone welcome back
today<00:00:02.800><c> we</c><00:00:03.100><c> make</c><00:00:03.600><c> bread</c>

00:00:05.120 --> 00:00:05.130 align:start position:0%
today we make bread
 

00:00:05.130 --> 00:00:08.000 align:start position:0%
today we make bread
[Music]

00:00:08.000 --> 00:00:08.010 align:start position:0%
[Music]
 

00:00:08.010 --> 00:00:10.000 align:start position:0%
[Music]
first<00:00:08.400><c> the</c><00:00:08.700><c> flour</c><00:00:09.200><c> &amp;</c><00:00:09.500><c> salt</c>

00:00:10.000 --> 00:00:10.010 align:start position:0%
first the flour &amp; salt
 
"""

PLAIN_VTT = """WEBVTT - a cooking show

NOTE written by hand

intro
00:00:01.000 --> 00:00:03.500 line:90%
<v Chef>Welcome to the <i>kitchen</i>.

00:03.500 --> 00:00:06.000
Today: bread &amp; butter
on two lines
"""

SRT = """1
00:00:01,000 --> 00:00:03,500
<i>Welcome</i> to the kitchen.

2
00:00:04,000 --> 00:00:06,250
{\\an8}Today we bake
bread.

"""


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_youtube_auto_captions_keep_each_spoken_word_once_with_its_time(tmp_path):
    cues = read_transcript(write(tmp_path, "auto.en.vtt", YOUTUBE_VTT))
    words = [w for cue in cues for w in cue.words]
    assert [w.text for w in words] == "hi everyone welcome back today we make bread first the flour & salt".split()
    starts = [w.start for w in words]
    assert starts == [0.0, 0.48, 0.96, 1.5, 2.36, 2.8, 3.1, 3.6, 8.01, 8.4, 8.7, 9.2, 9.5]
    for word, following in zip(words, words[1:]):
        assert word.start < word.end <= following.start
    assert [c.text for c in cues] == ["hi everyone welcome back", "today we make bread", "first the flour & salt"]
    assert (cues[0].start, cues[0].end) == (0.0, 2.35) and cues[2].end == 10.0


def test_plain_webvtt_with_identifiers_notes_voices_and_short_timestamps(tmp_path):
    cues = read_transcript(write(tmp_path, "show.vtt", PLAIN_VTT))
    assert cues == [
        Cue(1.0, 3.5, "Welcome to the kitchen."),
        Cue(3.5, 6.0, "Today: bread & butter on two lines"),
    ]


def test_srt(tmp_path):
    cues = read_transcript(write(tmp_path, "show.srt", SRT))
    assert cues == [Cue(1.0, 3.5, "Welcome to the kitchen."), Cue(4.0, 6.25, "Today we bake bread.")]


def test_srt_in_utf16_with_bom_and_crlf(tmp_path):
    path = write(tmp_path, "show.srt", "\ufeff" + SRT.replace("\n", "\r\n"), encoding="utf-16")
    assert [c.text for c in read_transcript(path)] == ["Welcome to the kitchen.", "Today we bake bread."]


def test_howto100m_json_and_jsonl(tmp_path):
    caption = {"start": [0.5, 3.2, 7.0], "end": [3.2, 7.0, 9.1], "text": ["add the flour", "mix it\nwell", "[Music]"]}
    expected = [Cue(0.5, 3.2, "add the flour"), Cue(3.2, 7.0, "mix it well")]
    assert read_transcript(write(tmp_path, "v.json", json.dumps(caption))) == expected
    assert read_transcript(write(tmp_path, "w.json", json.dumps({"vid123": caption}))) == expected
    lines = [{"start": s, "end": e, "text": t} for s, e, t in zip(caption["start"], caption["end"], caption["text"])]
    assert read_transcript(write(tmp_path, "v.jsonl", "\n".join(json.dumps(l) for l in lines) + "\n")) == expected
    assert read_transcript(write(tmp_path, "x.json", json.dumps(lines))) == expected


def test_format_is_detected_from_content_or_given(tmp_path):
    assert detect_format("a.txt", PLAIN_VTT) == "vtt"
    assert detect_format("a.txt", SRT) == "srt"
    assert detect_format("a.txt", '{"start": [1], "end": [2], "text": ["a"]}') == "json"
    assert detect_format("a.txt", '{"start": 1, "end": 2, "text": "a"}\n{"start": 2, "end": 3, "text": "b"}\n') == "jsonl"
    path = write(tmp_path, "captions.txt", SRT)
    assert read_transcript(path) == read_transcript(path, "srt")
    with pytest.raises(InputError, match="cannot tell the transcript format"):
        read_transcript(write(tmp_path, "notes.txt", "just some words"))


def test_overlapping_cues_end_where_the_next_begins_and_simultaneous_ones_join(tmp_path):
    caption = {"start": [0.0, 2.0, 2.0, 5.0], "end": [3.0, 4.0, 4.5, 6.0], "text": ["one two", "three", "four", "five"]}
    cues = read_transcript(write(tmp_path, "o.json", json.dumps(caption)))
    assert cues == [Cue(0.0, 2.0, "one two"), Cue(2.0, 4.5, "three four"), Cue(5.0, 6.0, "five")]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.vtt", "", "empty transcript file"),
        ("blank.srt", "\n  \n", "empty transcript file"),
        ("bad.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:0x.000\nhello\n", r"bad\.vtt:3: malformed timestamp '00:00:0x\.000'"),
        ("bad.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:61.000\nhello\n", r"bad\.vtt:3: .*below 60"),
        ("bad.vtt", "WEBVTT\n\n00:00:01.000 00:00:02.000\nhello\n", r"bad\.vtt:3: expected a cue timing line"),
        ("bad.vtt", "1\n00:00:01.000 --> 00:00:02.000\nhello\n", r"bad\.vtt:1: not a WebVTT file"),
        ("back.vtt", "WEBVTT\n\n00:00:02.000 --> 00:00:01.000\nhello\n", r"back\.vtt:3: cue ends \(1\.000 s\) before it starts"),
        (
            "order.srt",
            "1\n00:00:05,000 --> 00:00:06,000\nlater\n\n2\n00:00:01,000 --> 00:00:02,000\nearlier\n",
            r"order\.srt:6: cue starts at 1\.000 s, before the previous cue \(5\.000 s\)",
        ),
        ("no-timing.srt", "1\nhello there\n", r"no-timing\.srt:2: expected an SRT timing line"),
        ("bad.json", '{"start": [1, 2], "end": [2], "text": ["a", "b"]}', r"bad\.json: 'start', 'end' and 'text' differ in length"),
        ("bad.json", '{"start": [1], "end": ["2s"], "text": ["a"]}', r"bad\.json: entry 0: 'end' must be a number"),
        ("bad.json", '{"start": [1], "end": [2], "text": ["a"]', r"bad\.json:1: invalid JSON"),
        ("bad.jsonl", '{"start": 1, "end": 2, "text": "a"}\n{"start": 2, "text": "b"}\n', r"bad\.jsonl:2: missing key 'end'"),
        (
            "tags.vtt",
            "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nhi<00:00:02.000><c> there</c><00:00:01.500><c> you</c>\n",
            r"tags\.vtt:3: word timestamp 00:00:01\.500 goes back in time",
        ),
    ],
)
def test_malformed_transcripts_give_errors_naming_file_and_line(tmp_path, name, content, message):
    with pytest.raises(InputError, match=message):
        read_transcript(write(tmp_path, name, content))


def test_wrong_encoding_and_missing_file_are_clear_errors(tmp_path):
    latin1 = write(tmp_path, "latin.srt", "1\n00:00:01,000 --> 00:00:02,000\ncr\u00e8me br\u00fbl\u00e9e\n", encoding="latin-1")
    with pytest.raises(InputError, match=r"latin\.srt:3: not utf-8 text \(byte 0xe8\).*iconv"):
        read_transcript(latin1)
    assert read_transcript(latin1, encoding="latin-1")[0].text == "cr\u00e8me br\u00fbl\u00e9e"
    with pytest.raises(InputError, match="transcript not found"):
        read_transcript(tmp_path / "nothing.vtt")


def test_webvtt_without_cues_is_a_video_without_speech(tmp_path):
    assert read_transcript(write(tmp_path, "silent.vtt", "WEBVTT\n\n")) == []


def test_webvtt_without_an_empty_line_after_the_header(tmp_path):
    path = write(tmp_path, "tight.vtt", "WEBVTT\n00:00:01.000 --> 00:00:02.000\nhello\n\n00:00:02.000 --> 00:00:03.000\nthere\n")
    assert read_transcript(path) == [Cue(1.0, 2.0, "hello"), Cue(2.0, 3.0, "there")]


def test_written_webvtt_reads_back_with_word_timings(tmp_path):
    words = (Word(1.0, 1.3, "okay"), Word(1.3, 1.52, "so"), Word(1.6, 2.0, "<now>"))
    cues = [Cue(1.0, 2.0, "okay so <now>", words), Cue(3.0, 4.5, "fish & chips")]
    path = tmp_path / "t.vtt"
    write_webvtt(path, cues)
    assert "&lt;now&gt;" in path.read_text()
    back = read_transcript(path)
    assert [c.text for c in back] == ["okay so <now>", "fish & chips"]  # escaped, so not read as a tag
    assert [w.start for w in back[0].words] == [1.0, 1.3, 1.6]
    # in a file with word timings, a cue without tags has its words spread over its span
    assert [(w.start, w.end) for w in back[1].words] == [(3.0, 3.5), (3.5, 4.0), (4.0, 4.5)]
    assert webvtt_text([]).startswith("WEBVTT")


def test_clean_text_drops_markup_and_annotations():
    assert clean_text("<i>Hello</i> [Music] world&nbsp;&amp; ♪ >> friends") == "Hello world & friends"


def timed(text, start=0.0, step=0.3, gaps=None):
    """Words of ``text`` each lasting ``step`` s; ``gaps`` maps a word index to extra silence before it."""
    words, t = [], start
    for i, token in enumerate(text.split()):
        t += (gaps or {}).get(i, 0.0)
        words.append(Word(round(t, 3), round(t + step, 3), token))
        t += step
    return words


def test_timed_words_split_at_punctuation_pauses_and_max_words():
    words = timed("we mix the flour. then Dr. Smith adds water slowly and we wait a long time", gaps={9: 1.2})
    cues = [Cue(words[0].start, words[-1].end, "", tuple(words))]
    sentences = split_sentences(cues, pause=0.7, max_words=4)
    texts = [s.text for s in sentences]
    # punctuation after "flour." (not after the abbreviation "Dr."), a pause before "slowly",
    # and runs longer than 4 words cut into the fewest near-equal pieces: 5 -> 2 + 3, 7 -> 3 + 4
    assert texts == ["we mix the flour.", "then Dr.", "Smith adds water", "slowly and we", "wait a long time"]
    for sentence in sentences:
        assert sentence.start == sentence.words[0].start and sentence.end == sentence.words[-1].end
    assert sum(len(s.words) for s in sentences) == len(words)
    assert split_sentences(words, pause=0.7, max_words=4) == sentences  # the words themselves will do


def test_timed_words_form_one_stream_across_cues():
    first, second = timed("so now we"), timed("add the eggs", start=0.9)
    cues = [Cue(0.0, 0.9, "so now we", tuple(first)), Cue(0.9, 1.8, "add the eggs", tuple(second))]
    assert [s.text for s in split_sentences(cues)] == ["so now we add the eggs"]


def test_plain_cues_are_split_cue_by_cue_evenly_in_time():
    cues = [Cue(0.0, 4.0, "one two three four five six seven eight"), Cue(4.0, 5.0, "nine ten")]
    sentences = split_sentences(cues, max_words=3)
    assert [s.text for s in sentences] == ["one two", "three four five", "six seven eight", "nine ten"]
    assert [(s.start, s.end) for s in sentences] == [(0.0, 1.0), (1.0, 2.5), (2.5, 4.0), (4.0, 5.0)]
    assert all(s.words == () for s in sentences)
    # a cue boundary is a sentence boundary even without punctuation or pause
    assert len(split_sentences([Cue(0, 1, "a b"), Cue(1, 2, "c d")])) == 2


def test_split_sentences_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        split_sentences([], pause=0)
    with pytest.raises(ValueError):
        split_sentences([], max_words=0)


def test_trained_wordpiece_is_a_bert_tokenizer_capped_by_the_data(tmp_path):
    from videobert.text import load_tokenizer
    from videobert.corpus.joint_vocab import JointVocabulary

    texts = ["now the red circle moves left", "okay so the Blue square grows bigger", "the red square slides left"] * 3
    tokenizer = train_wordpiece(texts, vocab_size=8000, min_frequency=1)
    vocab = tokenizer.get_vocab()
    assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]
    assert len(tokenizer) < 8000  # as many pieces as the text supports
    ids = tokenizer("The RED circle", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["the", "red", "circle"]
    with_specials = tokenizer("red")["input_ids"]
    assert with_specials[0] == vocab["[CLS]"] and with_specials[-1] == vocab["[SEP]"]
    JointVocabulary(tokenizer, 10).save(tmp_path)
    again = load_tokenizer(tmp_path / "tokenizer")
    assert again("the red zzz", add_special_tokens=False)["input_ids"] == tokenizer("the red zzz", add_special_tokens=False)["input_ids"]


WORDPIECE_RUN = """
import hashlib, pathlib, sys
from videobert.text import train_wordpiece
text = pathlib.Path(sys.argv[1]).read_text()
texts = [line for line in text.splitlines() if line.strip()]
tokenizer = train_wordpiece(texts, vocab_size=int(sys.argv[2]), min_frequency=2)
tokenizer.save_pretrained(sys.argv[3])
folder = pathlib.Path(sys.argv[3])
print(" ".join(f"{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()}" for path in sorted(folder.iterdir())))
"""


@pytest.mark.parametrize("vocab_size", [120, 400])
def test_trained_wordpiece_is_the_same_in_every_process(tmp_path, vocab_size):
    """The trainer breaks ties between equally frequent merges by piece ids that it hands out in
    hash order, which differs per process; five processes must still save identical files."""
    import random
    import subprocess
    import sys

    rng = random.Random(3)
    words = ["the", "red", "blue", "circle", "square", "slides", "grows", "left", "right", "now", "okay",
             "then", "bigger", "smaller", "triangle", "spins", "rolls", "bounces", "green", "yellow"]
    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words) + rng.choice(["", "s", "ing", "ed"]) for _ in range(8))
                                for _ in range(300)) + "\n")
    hashes = {subprocess.run([sys.executable, "-c", WORDPIECE_RUN, str(corpus), str(vocab_size), str(tmp_path / f"tok{i}")],
                             check=True, capture_output=True, text=True).stdout for i in range(5)}
    assert len(hashes) == 1, hashes
    assert "tokenizer.json:" in hashes.pop()
    from videobert.text import load_tokenizer
    tokenizer = load_tokenizer(tmp_path / "tok0")
    assert len(tokenizer) <= vocab_size
    assert sorted(tokenizer.all_special_tokens) == sorted(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])


def test_label_marks_of_common_punctuation_models():
    from videobert.text import label_mark

    assert [label_mark(l) for l in ("0", "O", ".", ",", "?", "PERIOD", "B-COMMA", ".U", "OU", "QUESTION")] == [
        "", "", ".", ",", "?", ".", ",", ".", "", "?"]


def make_punctuation_model(folder):
    """A BERT token classifier (no encoder layers) whose weights are set by hand: it puts a full
    stop after "bread", a comma after "first", and nothing after any other word."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    tokenizer = train_wordpiece(["first we bake the bread then we eat it"] * 3, min_frequency=1)
    tokenizer.save_pretrained(str(folder))
    labels = {0: "O", 1: "PERIOD", 2: "COMMA"}
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=0, num_attention_heads=2,
                        intermediate_size=32, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    model = BertForTokenClassification(config)
    vocab = tokenizer.get_vocab()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.bert.embeddings.LayerNorm.weight.fill_(1.0)
        model.bert.embeddings.word_embeddings.weight[vocab["bread"], 0] = 1.0
        model.bert.embeddings.word_embeddings.weight[vocab["first"], 1] = 1.0
        model.classifier.weight[1, 0] = 5.0
        model.classifier.weight[2, 1] = 5.0
        model.classifier.bias[0] = 1.0
    model.save_pretrained(str(folder))
    return folder


def test_a_local_punctuation_model_adds_the_punctuation_that_splits_sentences(tmp_path):
    from videobert.text import Punctuator

    punctuator = Punctuator(make_punctuation_model(tmp_path / "punct"), device="cpu", window=4)
    words = "first we bake the bread then we eat it".split()
    assert punctuator(words) == ["first,", "we", "bake", "the", "bread.", "then", "we", "eat", "it"]
    sentences = split_sentences([Cue(0.0, 4.5, " ".join(words))], punctuator=punctuator)
    assert [(s.text, s.start, s.end) for s in sentences] == [
        ("first, we bake the bread.", 0.0, 2.5), ("then we eat it", 2.5, 4.5)]
    # text that has its own punctuation is left as it is
    assert [s.text for s in split_sentences([Cue(0, 2, "the bread is done. first it cools")], punctuator=punctuator)] == [
        "the bread is done.", "first it cools"]
    with pytest.raises(InputError, match="not a Hugging Face model folder"):
        Punctuator(tmp_path)


def test_words_the_vocabulary_does_not_hold_whole_are_counted_and_warned_of_when_most(caplog):
    from videobert.corpus.joint_vocab import JointVocabulary
    from videobert.text.wordpiece import unknown_words

    tokenizer = train_wordpiece(["now the red circle moves left", "the red square slides left"] * 3, min_frequency=1)
    assert unknown_words(tokenizer, "the RED circle") == ([], 3)
    assert unknown_words(tokenizer, "the xylophone, quantum!") == (["xylophone", ",", "quantum", "!"], 5)
    vocab = JointVocabulary(tokenizer, 4)
    with caplog.at_level("WARNING"):
        vocab.warn_unknown("red circle moves xylophone", "query")  # 1 of 4: the ranking still rests on the model's words
    assert not caplog.records
    with caplog.at_level("WARNING"):
        vocab.warn_unknown("red xylophone quantum", "query")
    assert len(caplog.records) == 1
    assert "2 of the 3 words of the query 'red xylophone quantum'" in caplog.text and "'xylophone', 'quantum'" in caplog.text
    with caplog.at_level("WARNING"):
        vocab.warn_unknown("red xylophone quantum", "query")  # said once per text
        vocab.warn_unknown("now the [MASK] zyzzyva quokka wombat", "template")  # a template's slots are not words
    assert len(caplog.records) == 2
    assert "3 of the 5 words of the template" in caplog.records[-1].getMessage()
