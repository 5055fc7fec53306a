import difflib
import json
import subprocess
import wave

import numpy as np
import pytest

from tests.conftest import run_cli
from videobert.media import audio_pcm
from videobert.text.asr import (
    PocketsphinxRecognizer, check_backend, is_spoken_word, transcribe, whisper_package, word_error_rate,
)
from videobert.text.stage import AsrConfig
from videobert.errors import ConfigError, InputError
from videobert.synthetic import espeak_exe, read_labels
from videobert.text import read_transcript

needs_espeak = pytest.mark.skipif(espeak_exe() is None, reason="needs espeak-ng (apt-get install espeak-ng)")

# Narration-style sentences, spoken with a Klatt voice (pocketsphinx's model was trained on
# natural speech; espeak's default voice is further from it).
SENTENCES = [
    "the red circle moves to the left of the screen",
    "now we add the sugar and stir it for two minutes",
    "put the chicken in the oven and wait",
]
VOICE, WORDS_PER_MINUTE = "en-us+klatt4", 160


def speak(text, path):
    subprocess.run([espeak_exe(), "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(path), "--", text],
                   check=True, capture_output=True)
    with wave.open(str(path)) as wav:
        return wav.getframerate(), np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)


def words_right(reference: str, hypothesis: str) -> float:
    """Fraction of the reference words that the hypothesis has, in order."""
    ref, hyp = reference.split(), hypothesis.split()
    return sum(b.size for b in difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False).get_matching_blocks()) / len(ref)


def test_word_error_rate():
    assert word_error_rate("a b c d", "a b c d") == 0.0
    assert word_error_rate("a b c d", "a x c") == 0.5  # one substitution, one deletion
    assert word_error_rate("a b", "a b c d") == 1.0  # two insertions
    assert word_error_rate("", "") == 0.0 and word_error_rate("", "a") == 1.0


def test_filler_and_silence_tokens_are_not_words():
    assert [t for t in ("<s>", "</s>", "<sil>", "[NOISE]", "++BREATH++", "the", "okay") if is_spoken_word(t)] == ["the", "okay"]


@needs_espeak
def test_pocketsphinx_transcribes_espeak_sentences_with_plausible_timings(tmp_path):
    """Three spoken sentences with 1.2 s of silence between them, through ffmpeg and the
    endpointer, as one file: at least half of the words right, and every recognised word timed
    inside the sentence it belongs to."""
    rate, silence_seconds = None, 1.2
    pieces, spans, offset = [], [], silence_seconds
    for i, sentence in enumerate(SENTENCES):
        rate, samples = speak(sentence, tmp_path / f"s{i}.wav")
        pieces += [np.zeros(int(silence_seconds * rate), np.int16), samples]
        spans.append((offset, offset + len(samples) / rate))
        offset += len(samples) / rate + silence_seconds
    pieces.append(np.zeros(int(silence_seconds * rate), np.int16))
    audio = tmp_path / "speech.wav"
    with wave.open(str(audio), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(rate)
        wav.writeframes(np.concatenate(pieces).tobytes())

    cfg = AsrConfig()
    cues, seconds = transcribe(audio, PocketsphinxRecognizer(), cfg.pause, cfg.max_words)
    assert seconds == pytest.approx(offset, abs=0.05)
    hypothesis = " ".join(w.text for cue in cues for w in cue.words)
    reference = " ".join(SENTENCES)
    wer, right = word_error_rate(reference, hypothesis), words_right(reference, hypothesis)
    print(f"pocketsphinx on espeak-ng ({VOICE}, {WORDS_PER_MINUTE} wpm): WER {wer:.2f}, words right {right:.2f}")
    print("  hypothesis:", hypothesis)
    assert right >= 0.5, hypothesis

    tolerance = 0.25

    def spoken_in(word, span):
        return span[0] - tolerance <= word.start < word.end <= span[1] + tolerance

    for cue in cues:
        assert cue.words and cue.text == " ".join(w.text for w in cue.words)
        # all of a cue's words lie in one spoken sentence: none in the silences, and no cue runs
        # across the silence between two sentences (the pause rule splits there)
        assert sum(all(spoken_in(w, span) for w in cue.words) for span in spans) == 1, (cue, spans)
    # the words of each sentence are recognised where that sentence was spoken
    for (a, b), sentence in zip(spans, SENTENCES):
        inside = " ".join(w.text for cue in cues for w in cue.words if a - tolerance <= w.start <= b + tolerance)
        assert words_right(sentence, inside) >= 0.3, (sentence, inside)


def test_audio_of_a_file_without_audio_stream_and_of_a_missing_file(synth_corpus, tmp_path):
    silent_video = synth_corpus / "videos" / "synth_0000.mp4"
    with pytest.raises(InputError, match="no audio stream"):
        transcribe(silent_video, None)
    with pytest.raises(InputError, match="file not found"):
        transcribe(tmp_path / "missing.mp4", None)
    with pytest.raises(InputError, match="ffmpeg could not decode the audio"):
        list(audio_pcm(silent_video))


def test_whisper_backend_needs_the_package_and_a_local_model(tmp_path):
    with pytest.raises(ConfigError, match="needs --model"):
        AsrConfig(backend="whisper").check()
    with pytest.raises(ConfigError, match="only the whisper backend"):
        AsrConfig(model=tmp_path).check()
    cfg = AsrConfig(backend="whisper", model=tmp_path / "no-such-model")
    if whisper_package() is None:
        with pytest.raises(ConfigError, match="faster-whisper or openai-whisper installed"):
            check_backend(cfg)
    else:
        with pytest.raises(ConfigError, match="does not exist"):
            check_backend(cfg)
    result = run_cli("asr", tmp_path / "m.jsonl", "-o", tmp_path / "out", "--backend", "whisper")
    assert result.returncode == 2 and "needs --model" in result.stderr


@needs_espeak
def test_asr_cli_transcribes_shards_resumes_and_records_videos_without_audio(synth_corpus, tmp_path):
    synth = run_cli(
        "synth", tmp_path / "narrated", "--videos", "1", "--audio", "--seed", "3",
        "--min-duration", "12", "--max-duration", "20", "--set", "max_segments=3", "--set", "silent_fraction=0",
    )
    assert synth.returncode == 0, synth.stderr
    narrated = tmp_path / "narrated"
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        json.dumps({"video_id": "a_narrated", "video": str(narrated / "videos" / "synth_0000.mp4")}) + "\n"
        + json.dumps({"video_id": "b_silent", "video": str(synth_corpus / "videos" / "synth_0000.mp4")}) + "\n"
        + json.dumps({"video_id": "c_captioned", "video": "x.mp4", "transcript": "x.vtt"}) + "\n"
    )
    out = tmp_path / "transcripts"
    # sorted ids a_narrated, b_silent are shards 0 and 1 of 2; c_captioned has a transcript already
    first = run_cli("asr", manifest, "-o", out, "--shard", "0/2", "--workers", "1")
    assert first.returncode == 0, first.stderr
    second = run_cli("asr", manifest, "-o", out, "--shard", "1/2")
    assert second.returncode == 0, second.stderr  # a video without audio is recorded, not fatal
    assert sorted(p.name for p in out.glob("*.vtt")) == ["a_narrated.vtt"]
    assert (out / "failures.jsonl").exists() is False
    records = [json.loads(l) for l in (out / "failures.shard-00001-of-00002.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in records] == [("b_silent", "no audio stream")]
    assert json.loads((out / "asr.json").read_text())["backend"] == "pocketsphinx"

    cues = read_transcript(out / "a_narrated.vtt")
    narration = [r for r in read_labels(narrated / "labels.jsonl") if r["narration"]]
    reference = " ".join(r["narration"] for r in narration)
    hypothesis = " ".join(w.text for cue in cues for w in cue.words)
    print(f"pocketsphinx on the synthetic narration (espeak-ng en-us, 165 wpm): WER {word_error_rate(reference, hypothesis):.2f}")
    print("  reference: ", reference)
    print("  hypothesis:", hypothesis)
    assert len(hypothesis.split()) >= len(reference.split()) // 2
    # each narration phrase is spoken from its cue's start: every recognised word falls between
    # the start of some phrase and the start of the next one (or the end of the video)
    transcript = read_transcript(narrated / "transcripts" / "synth_0000.vtt")
    starts = [c.start for c in transcript] + [float("inf")]
    for cue in cues:
        for word in cue.words:
            assert any(a - 0.25 <= word.start < b for a, b in zip(starts, starts[1:])), (word, starts)

    before = (out / "a_narrated.vtt").stat().st_mtime_ns
    again = run_cli("asr", manifest, "-o", out, "--shard", "0/2")
    assert again.returncode == 0 and "already transcribed" in again.stderr
    assert (out / "a_narrated.vtt").stat().st_mtime_ns == before


FAKE_FASTER_WHISPER = '''
"""Stands in for faster-whisper: checks what it is given, returns fixed words."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np


class WhisperModel:
    def __init__(self, path, device="cpu", device_index=0, compute_type="default"):
        assert (Path(path) / "model.bin").is_file() and device in ("cpu", "cuda")

    def transcribe(self, audio, language=None, word_timestamps=False):
        assert audio.dtype == np.float32 and np.abs(audio).max() <= 1.0 and word_timestamps
        seconds = len(audio) / 16000
        words = [(0.5, 0.9, " Hello"), (0.9, 1.4, " world."), (2.0, 2.3, " This"), (2.3, 2.5, " is"),
                 (2.5, seconds, f" {language}.")]
        return iter([SimpleNamespace(words=[SimpleNamespace(start=a, end=b, word=w) for a, b, w in words])]), None
'''


def test_whisper_backend_through_the_cli_with_a_stand_in_package(tmp_path):
    """The whisper adapter (audio as float32, word timestamps, punctuation-led sentences) run by the
    real CLI; a stand-in faster_whisper package replaces the model."""
    from tests.conftest import REPO

    package = tmp_path / "site" / "faster_whisper"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_FASTER_WHISPER)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.bin").write_bytes(b"")
    audio = tmp_path / "tone.wav"
    with wave.open(str(audio), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(16000)
        wav.writeframes((8000 * np.sin(np.arange(4 * 16000) * 0.05)).astype(np.int16).tobytes())
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video_id": "tone", "video": "tone.wav"}) + "\n")
    result = run_cli("asr", manifest, "-o", tmp_path / "out", "--backend", "whisper", "--model", model,
                     "--language", "fr", env={"PYTHONPATH": f"{REPO}:{tmp_path / 'site'}"})
    assert result.returncode == 0, result.stderr
    cues = read_transcript(tmp_path / "out" / "tone.vtt")
    assert [c.text for c in cues] == ["Hello world.", "This is fr."]
    assert [(w.start, w.text) for w in cues[1].words] == [(2.0, "This"), (2.3, "is"), (2.5, "fr.")]
    assert cues[1].end == pytest.approx(4.0, abs=0.05)  # the whole audio reached the model
    assert json.loads((tmp_path / "out" / "asr.json").read_text())["backend"] == "faster_whisper"


@needs_espeak
def test_speech_without_pauses_is_decoded_in_pieces_that_keep_their_times(tmp_path, monkeypatch):
    import videobert.text.asr

    monkeypatch.setattr(videobert.text.asr, "MAX_UTTERANCE_SECONDS", 0.8)
    rate, samples = speak(SENTENCES[1], tmp_path / "s.wav")
    silence = np.zeros(rate, np.int16)
    audio = tmp_path / "speech.wav"
    with wave.open(str(audio), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(rate)
        wav.writeframes(np.concatenate([silence, samples, silence]).tobytes())
    start, end = 1.0, 1.0 + len(samples) / rate
    cues, _ = transcribe(audio, PocketsphinxRecognizer())
    words = [w for c in cues for w in c.words]
    assert len(words) >= 4
    # the pieces after the first are placed where they were spoken, not at the start of the speech
    assert all(start - 0.25 <= w.start < w.end <= end + 0.25 for w in words)
    assert words[-1].end > end - 0.6 and words[0].start < start + 0.6
