import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_cli
from videobert.corpus import (
    EXAMPLE_KEYS, SPLITS, CorpusConfig, load_corpus, overlapping_clips, video_only_segments,
)
from videobert.corpus import run as build_corpus
from videobert.errors import ConfigError, InputError, StageError
from videobert.media import probe
from videobert.runtime import Shard
from videobert.store import read_failures
from videobert.synthetic import read_labels
from videobert.text import Cue, Word, read_transcript, write_webvtt
from videobert.corpus.joint_vocab import JointVocabulary

CLIP_SECONDS = 1.5


def write_tokens(folder: Path, words: dict[str, np.ndarray], vocab_size: int, vocab="/data/vocab") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for video_id, array in words.items():
        np.save(folder / f"{video_id}.npy", np.asarray(array, dtype=np.int32))
    meta = {"vocab": vocab, "vocab_size": vocab_size, "fps": 20, "clip_frames": 30, "clip_seconds": CLIP_SECONDS}
    (folder / "tokens.json").write_text(json.dumps(meta))
    return folder


def test_overlapping_clips_are_exactly_those_whose_span_overlaps():
    rng = np.random.default_rng(0)
    n_clips = 12
    # random times, and times on clip boundaries where rounding could go wrong
    times = list(rng.uniform(-1, 20, size=300)) + [k * CLIP_SECONDS for k in range(14)] + [0.1 * k for k in range(200)]
    for _ in range(3000):
        start, end = sorted(rng.choice(times, size=2))
        expected = [i for i in range(n_clips) if i * CLIP_SECONDS < end and (i + 1) * CLIP_SECONDS > start]
        assert list(overlapping_clips(start, end, n_clips, CLIP_SECONDS)) == expected, (start, end)
    assert list(overlapping_clips(3.0, 4.5, n_clips, CLIP_SECONDS)) == [2]  # [3.0, 4.5) is clip 2 exactly
    assert list(overlapping_clips(18.0, 19.0, n_clips, CLIP_SECONDS)) == []  # past the last clip


def test_video_only_segments_are_runs_of_16_consecutive_words():
    assert [(r.start, r.stop) for r in video_only_segments(40, 16)] == [(0, 16), (16, 32), (32, 40)]
    assert video_only_segments(0, 16) == []


@pytest.fixture
def small_corpus_inputs(tmp_path):
    """Eight videos covering each way a video can come in (see the comments)."""
    rng = np.random.default_rng(1)
    subs, asr = tmp_path / "subs", tmp_path / "asr"
    subs.mkdir()
    asr.mkdir()
    # 10 clips = 15 s; the last cue (15.2 s) lies past the last clip and is dropped
    write_webvtt(subs / "text.vtt", [
        Cue(0.2, 2.9, "now we slice the onions"), Cue(3.0, 4.5, "then the garlic"),
        Cue(6.1, 11.0, "fry them in oil until golden"), Cue(15.2, 16.0, "enjoy"),
    ])
    write_webvtt(subs / "val.vtt", [Cue(1.0, 4.0, "stir the zucchini soup")])
    write_webvtt(subs / "wins.vtt", [Cue(0.0, 3.0, "the manifest transcript wins")])
    (subs / "broken.srt").write_text("1\n00:00:01,000 --> 00:00:xx,000\nhello\n")
    words = (Word(0.5, 0.9, "okay"), Word(0.9, 1.4, "so"), Word(3.0, 3.5, "bake"), Word(3.5, 4.2, "it"))
    write_webvtt(asr / "from_asr.vtt", [Cue(0.5, 1.4, "okay so", words[:2]), Cue(3.0, 4.2, "bake it", words[2:])])
    write_webvtt(asr / "wins.vtt", [Cue(0.0, 3.0, "the asr transcript loses")])
    (asr / "failures.jsonl").write_text(
        json.dumps({"id": "no_audio", "reason": "no audio stream"}) + "\n"
        + json.dumps({"id": "asr_failed", "reason": "ffmpeg could not decode the audio (Invalid data)"}) + "\n"
    )
    manifest = [
        {"video_id": "text", "video": "v.mp4", "transcript": "subs/text.vtt", "split": "train"},
        {"video_id": "val", "video": "v.mp4", "transcript": "subs/val.vtt", "split": "val"},
        {"video_id": "wins", "video": "v.mp4", "transcript": "subs/wins.vtt", "split": "test"},
        {"video_id": "from_asr", "video": "v.mp4"},  # no split: train
        {"video_id": "silent", "video": "v.mp4", "split": "train"},  # no transcript anywhere: no speech
        {"video_id": "no_audio", "video": "v.mp4", "split": "train"},  # ASR found no audio stream: no speech
        {"video_id": "asr_failed", "video": "v.mp4", "split": "train"},  # ASR failed: a failure, not silence
        {"video_id": "broken", "video": "v.mp4", "transcript": "subs/broken.srt"},  # unreadable transcript
        {"video_id": "no_tokens", "video": "v.mp4", "transcript": "subs/val.vtt", "split": "val"},
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    n_clips = {"text": 10, "val": 4, "wins": 3, "from_asr": 4, "silent": 40, "no_audio": 5, "asr_failed": 5, "broken": 5}
    tokens = write_tokens(tmp_path / "tokens", {k: rng.integers(0, 30, size=n) for k, n in n_clips.items()}, vocab_size=30)
    return tmp_path, tokens, asr


def test_corpus_aligns_each_sentence_with_exactly_its_clips(small_corpus_inputs):
    root, tokens, asr = small_corpus_inputs
    out = root / "corpus"
    cfg = CorpusConfig(wordpiece_min_frequency=1)
    summary = build_corpus(root / "manifest.jsonl", tokens, out, cfg, transcripts_dir=asr).details
    examples = {split: load_corpus(out, split) for split in SPLITS}
    by_video = {}
    for split, items in examples.items():
        for e in items:
            assert tuple(e) == EXAMPLE_KEYS
            by_video.setdefault(e["video_id"], set()).add(split)
    assert all(len(splits) == 1 for splits in by_video.values())  # no video in two splits
    assert {v: s.pop() for v, s in by_video.items()} == {
        "text": "train", "from_asr": "train", "silent": "train", "no_audio": "train", "val": "val", "wins": "test",
    }

    words = {p.stem: np.load(p) for p in tokens.glob("*.npy")}
    text = [e for e in examples["train"] if e["video_id"] == "text"]
    assert [e["text"] for e in text] == ["now we slice the onions", "then the garlic", "fry them in oil until golden"]
    assert [e["index"] for e in text] == [0, 1, 2]
    # [0.2, 2.9) -> clips 0, 1; [3.0, 4.5) -> clip 2 only; [6.1, 11.0) -> clips 4 … 7
    assert [(e["first_clip"], len(e["video_ids"])) for e in text] == [(0, 2), (2, 1), (4, 4)]
    for e in text + examples["val"] + examples["test"]:
        clips = [i for i in range(len(words[e["video_id"]]))
                 if i * CLIP_SECONDS < e["end"] and (i + 1) * CLIP_SECONDS > e["start"]]
        assert e["first_clip"] == clips[0] and e["video_ids"] == words[e["video_id"]][clips].tolist()

    asr_examples = [e for e in examples["train"] if e["video_id"] == "from_asr"]
    assert [e["text"] for e in asr_examples] == ["okay so", "bake it"]  # 1.6 s pause > 0.7 s splits
    assert [e["text"] for e in examples["test"]] == ["the manifest transcript wins"]

    for video_id, n in (("silent", 40), ("no_audio", 5)):
        segments = [e for e in examples["train"] if e["video_id"] == video_id]
        assert [len(e["video_ids"]) for e in segments] == ([16, 16, 8] if n == 40 else [5])
        assert all(e["text"] == "" and e["text_ids"] == [] for e in segments)
        assert sum((e["video_ids"] for e in segments), []) == words[video_id].tolist()
        assert [e["start"] for e in segments] == [k * 16 * CLIP_SECONDS for k in range(len(segments))]

    failures = {r["id"]: r["reason"] for r in read_failures(out)}
    assert set(failures) == {"asr_failed", "broken", "no_tokens"}
    assert "speech recognition failed (ffmpeg could not decode" in failures["asr_failed"]
    assert "broken.srt:2: malformed timestamp" in failures["broken"]
    assert "no visual words" in failures["no_tokens"]

    assert summary["dropped_sentences"]["outside_clips"] == 1  # "enjoy" at 15.2 s
    assert summary["videos"] == {"total": 9, "with_speech": 4, "video_only": 2, "failed": 3}
    for split in SPLITS:
        assert summary["splits"][split]["examples"] == len(examples[split])
    assert summary["clips_per_sentence"]["count"] == len([e for s in SPLITS for e in examples[s] if e["text"]])
    assert json.loads((out / "summary.json").read_text()) == summary


def test_trained_tokenizer_sees_only_the_train_split_and_the_joint_vocabulary_is_laid_out(small_corpus_inputs):
    root, tokens, asr = small_corpus_inputs
    out = root / "corpus"
    cfg = CorpusConfig(wordpiece_min_frequency=1)
    build_corpus(root / "manifest.jsonl", tokens, out, cfg, transcripts_dir=asr)
    vocab = JointVocabulary.load(out)
    # (HF tokenizers breaks ties between merges in hash order, so the exact pieces vary from run
    # to run; what the corpus promises is the text it was trained on and the saved result)
    train_words = "now we slice the onions then garlic fry them in oil until golden enjoy okay so bake it".split()
    pieces = vocab.tokenizer.get_vocab()
    assert all(w in pieces for w in train_words)  # seen once each: whole words with min_frequency 1
    assert not {"stir", "zucchini", "soup", "manifest"} & set(pieces)  # val and test words
    assert vocab.unk_id not in vocab.encode_text(" ".join(train_words))
    layout = json.loads((out / "vocabulary.json").read_text())
    T = vocab.text_vocab_size
    assert layout["visual_offset"] == T + 1 and layout["size"] == T + 1 + 30
    assert layout["special_ids"]["[>]"] == T and layout["visual_vocab"] == "/data/vocab"
    assert (out / "tokenizer" / "vocab.txt").read_text().split("\n")[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for e in load_corpus(out, "train"):
        assert e["text_ids"] == vocab.encode_text(e["text"])


def test_a_local_bert_tokenizer_folder_is_used_as_given(small_corpus_inputs):
    root, tokens, asr = small_corpus_inputs
    bert = root / "bert"
    bert.mkdir()
    pieces = ["[PAD]"] + [f"[unused{i}]" for i in range(3)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces += sorted({w for line in ["now we slice the onions then garlic okay so bake it"] for w in line.split()}) + ["##s"]
    (bert / "vocab.txt").write_text("\n".join(pieces) + "\n")
    out = root / "corpus"
    summary = build_corpus(root / "manifest.jsonl", tokens, out, CorpusConfig(tokenizer=bert), transcripts_dir=asr).details
    assert summary["tokenizer"] == {"source": str(bert), "text_vocab_size": len(pieces)}
    first = load_corpus(out, "train")[0]
    assert first["text"] == "now we slice the onions"
    assert first["text_ids"] == [pieces.index(w) for w in first["text"].split()]
    assert JointVocabulary.load(out).special_ids == {"[PAD]": 0, "[UNK]": 4, "[CLS]": 5, "[SEP]": 6, "[MASK]": 7, "[>]": len(pieces)}


def test_bad_tokens_folder_and_nothing_to_build_are_errors(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video_id": "a", "video": "a.mp4"}) + "\n")
    with pytest.raises(InputError, match="tokens.json"):
        build_corpus(manifest, tmp_path / "missing", tmp_path / "c", CorpusConfig())
    tokens = write_tokens(tmp_path / "tokens", {}, vocab_size=8)
    with pytest.raises(StageError, match="no example could be made"):
        build_corpus(manifest, tokens, tmp_path / "c", CorpusConfig())
    assert not (tmp_path / "c" / "summary.json").exists()  # not a finished corpus


def test_corpus_cli_on_the_synthetic_corpus_matches_the_labelled_segments(synth_corpus, tmp_path):
    """Each text example's text is the narration of the labelled segment its span overlaps most,
    its visual words are exactly its clips', and splits follow the manifest."""
    rng = np.random.default_rng(0)
    manifest = [json.loads(line) for line in (synth_corpus / "manifest.jsonl").read_text().splitlines()]
    words = {}
    for entry in manifest:
        n_clips = math.floor(probe(synth_corpus / entry["video"]).duration / CLIP_SECONDS)
        words[entry["video_id"]] = rng.integers(0, 64, size=n_clips)
    tokens = write_tokens(tmp_path / "tokens", words, vocab_size=64)
    out = tmp_path / "corpus"
    result = run_cli("corpus", synth_corpus / "manifest.jsonl", "--tokens", tokens, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "examples (train" in result.stderr

    labels = read_labels(synth_corpus / "labels.jsonl")
    split_of = {m["video_id"]: m["split"] for m in manifest}
    seen = {}
    narrated = 0
    for split in SPLITS:
        for e in load_corpus(out, split):
            assert split_of[e["video_id"]] == split
            seen.setdefault(e["video_id"], set()).add(split)
            segments = [r for r in labels if r["video_id"] == e["video_id"]]
            best = max(segments, key=lambda r: min(r["end"], e["end"]) - max(r["start"], e["start"]))
            assert e["text"] == best["narration"], (e, best)
            n = len(words[e["video_id"]])
            clips = list(overlapping_clips(e["start"], e["end"], n, CLIP_SECONDS))
            assert clips and e["first_clip"] == clips[0] and e["video_ids"] == words[e["video_id"]][clips].tolist()
            narrated += 1
    assert all(len(s) == 1 for s in seen.values()) and set(seen) == set(split_of)
    assert {s for v in seen.values() for s in v} == set(SPLITS)
    # every narrated segment made an example, except those lying past the last whole clip
    expected = [r for r in labels if r["narration"]]
    summary = json.loads((out / "summary.json").read_text())
    assert narrated + summary["dropped_sentences"]["outside_clips"] == len(expected)
    assert (out / "config.yaml").exists() and (out / "failures.jsonl").read_text() == ""

    # another process builds the same bytes: the trained tokenizer, its ids in the splits, the vocabulary
    again = tmp_path / "again"
    assert run_cli("corpus", synth_corpus / "manifest.jsonl", "--tokens", tokens, "-o", again).returncode == 0
    files = sorted(p.relative_to(out) for p in out.rglob("*")
                   if p.is_file() and p.name != "summary.json" and not p.name.startswith("."))  # .lock: pid
    assert {"shards/shard-00000-of-00001/train/text_ids.values.npy", "vocabulary.json", "corpus.json",
            "tokenizer/tokenizer.json"} <= {str(f) for f in files}
    assert [(again / f).read_bytes() for f in files] == [(out / f).read_bytes() for f in files]


def test_a_punctuation_model_splits_unpunctuated_speech(tmp_path):
    from tests.test_text import make_punctuation_model

    words = "first we bake the bread then we eat it".split()
    timed = tuple(Word(round(0.5 * i, 3), round(0.5 * i + 0.4, 3), w) for i, w in enumerate(words))
    write_webvtt(tmp_path / "a.vtt", [Cue(0.0, timed[-1].end, " ".join(words), timed)])
    (tmp_path / "m.jsonl").write_text(json.dumps({"video_id": "a", "video": "a.mp4", "transcript": "a.vtt"}) + "\n")
    tokens = write_tokens(tmp_path / "tokens", {"a": np.arange(4)}, vocab_size=4)
    out = tmp_path / "corpus"
    cfg = CorpusConfig(punctuator=make_punctuation_model(tmp_path / "punct"), wordpiece_min_frequency=1)
    build_corpus(tmp_path / "m.jsonl", tokens, out, cfg)
    examples = load_corpus(out, "train")
    assert [(e["text"], e["start"], e["end"], e["first_clip"], len(e["video_ids"])) for e in examples] == [
        ("first, we bake the bread.", 0.0, 2.5, 0, 2), ("then we eat it", 2.5, 4.4, 1, 2)]  # a word ends where the next begins


# ------------------------------------------------------------------------------ shards, resume, format
def corpus_files(folder: Path) -> dict[str, bytes]:
    """Every file the corpus stage wrote (locks, which hold a pid, and config.yaml aside), by path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.fixture
def many_videos(tmp_path):
    """Twenty videos with transcripts, across the three splits (one unreadable transcript)."""
    rng = np.random.default_rng(5)
    subs = tmp_path / "subs"
    subs.mkdir()
    manifest, words = [], {}
    vocabulary = "cut fry stir bake the onion garlic pan oil slowly until golden now then".split()
    for v in range(20):
        video_id = f"v{v:02d}"
        cues = [Cue(3.0 * k + 0.2, 3.0 * k + 2.8, " ".join(rng.choice(vocabulary, size=5))) for k in range(4)]
        write_webvtt(subs / f"{video_id}.vtt", cues)
        words[video_id] = rng.integers(0, 40, size=9)
        manifest.append({"video_id": video_id, "video": "v.mp4", "transcript": f"subs/{video_id}.vtt",
                         "split": ("train", "train", "val", "test")[v % 4]})
    (subs / "v07.vtt").write_text("WEBVTT\n\n00:00:01.000 --> 00:00:xx.000\nbroken\n")
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    return tmp_path, write_tokens(tmp_path / "tokens", words, vocab_size=40)


def test_shards_built_apart_equal_one_built_whole_and_a_rerun_redoes_nothing(many_videos, tmp_path):
    root, tokens = many_videos
    cfg = CorpusConfig(wordpiece_min_frequency=1, videos_per_shard=3)  # 7 shards
    whole = build_corpus(root / "manifest.jsonl", tokens, tmp_path / "whole", cfg)
    assert whole.details["shards"] == 7 and whole.failed == 1
    first = build_corpus(root / "manifest.jsonl", tokens, tmp_path / "apart", cfg, shard=Shard(1, 2))
    assert first.details == {} and "still to be built" in first.message  # not finished: no summary yet
    assert not (tmp_path / "apart" / "summary.json").exists()
    second = build_corpus(root / "manifest.jsonl", tokens, tmp_path / "apart", cfg, shard=Shard(0, 2))
    assert second.details["examples"] == whole.details["examples"]
    assert corpus_files(tmp_path / "apart") == corpus_files(tmp_path / "whole")
    again = build_corpus(root / "manifest.jsonl", tokens, tmp_path / "whole", cfg)
    assert again.done == 0 and again.skipped == 20 and "0 shards built, 7 already done" in again.message
    # rows in manifest order, whichever worker wrote them
    assert [e["video_id"] for e in load_corpus(tmp_path / "apart", "train")][:4] == ["v00", "v00", "v00", "v00"]


KILLER = """
import os, signal, sys
from videobert.corpus import columns, stage
calls = {"n": 0}
real = columns.write_table
def write_table(folder, arrays):
    calls["n"] += 1
    if calls["n"] == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 half-way through writing a shard
    real(folder, arrays)
stage.write_table = write_table
from pipelines.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_corpus_killed_mid_way_and_rerun_is_the_same_bytes_as_one_built_at_once(many_videos, tmp_path):
    root, tokens = many_videos
    args = ["corpus", str(root / "manifest.jsonl"), "--tokens", str(tokens), "--videos-per-shard", "3",
            "--wordpiece-min-frequency", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIDEOBERT_PROGRESS": "0"}
    killed = subprocess.run([sys.executable, "-c", KILLER, "11", *args, "-o", str(tmp_path / "killed")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    finished = sorted(p.name for p in (tmp_path / "killed" / "shards").iterdir() if not p.name.startswith("."))
    assert finished == [f"shard-0000{i}-of-00007" for i in range(3)]  # 3 tables a shard: the 4th was cut short
    assert any(p.name.startswith(".") for p in (tmp_path / "killed" / "shards").iterdir())  # its temporary folder
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = run_cli(*args, "-o", tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert "4 shards built, 3 already done" in resumed.stderr
    assert run_cli(*args, "-o", tmp_path / "once").returncode == 0
    assert corpus_files(tmp_path / "killed") == corpus_files(tmp_path / "once")


def test_changed_settings_start_the_folder_afresh_but_a_shard_worker_refuses(many_videos, tmp_path):
    root, tokens = many_videos
    out = tmp_path / "corpus"
    build_corpus(root / "manifest.jsonl", tokens, out, CorpusConfig(wordpiece_min_frequency=1, videos_per_shard=3))
    with pytest.raises(ConfigError, match=r"started with other settings \(max_words\)"):
        build_corpus(root / "manifest.jsonl", tokens, out, CorpusConfig(wordpiece_min_frequency=1, videos_per_shard=3,
                                                                         max_words=4), shard=Shard(0, 2))
    assert (out / "summary.json").exists()  # nothing was touched
    rebuilt = build_corpus(root / "manifest.jsonl", tokens, out, CorpusConfig(wordpiece_min_frequency=1, max_words=4))
    assert rebuilt.details["shards"] == 1 and rebuilt.details["words_per_sentence"]["max"] <= 4


def test_a_corpus_of_the_earlier_jsonl_format_is_refused_with_how_to_rebuild_it(many_videos, tmp_path):
    root, tokens = many_videos
    old = tmp_path / "old"
    old.mkdir()
    (old / "train.jsonl").write_text(json.dumps({"video_id": "a", "index": 0, "start": 0, "end": 1, "text": "x",
                                                 "text_ids": [5], "video_ids": [1], "first_clip": 0}) + "\n")
    (old / "summary.json").write_text(json.dumps({"examples": 1}))
    with pytest.raises(InputError, match=r"old: a corpus of an earlier videobert \(JSONL splits\).*rebuild it with 'videobert corpus'"):
        load_corpus(old, "train")
    summary = build_corpus(root / "manifest.jsonl", tokens, old, CorpusConfig(wordpiece_min_frequency=1))
    assert not (old / "train.jsonl").exists() and summary.details["format"] == 2
    assert len(load_corpus(old, "train")) == summary.details["splits"]["train"]["examples"]


def test_wordpiece_trains_on_a_bounded_seeded_sample_of_sentences(many_videos, tmp_path, caplog):
    from videobert.corpus.stage import _Inputs, wordpiece_sample
    from videobert.vocab.stage import read_tokens_info
    from videobert.manifest import read_manifest

    root, tokens = many_videos
    entries = read_manifest(root / "manifest.jsonl")

    def sample(size, seed=0):
        cfg = CorpusConfig(wordpiece_sample=size, seed=seed)
        return wordpiece_sample(_Inputs(entries, read_tokens_info(tokens), None, {}, cfg, None))

    everything = sample(10_000)
    train_cues = [read_transcript(e.transcript) for e in entries if e.split == "train" and e.video_id != "v07"]
    assert everything == [c.text for cues in train_cues for c in cues]  # all of it, in manifest order
    assert len(sample(7)) == 7 and sample(7) == sample(7) and sample(7) != sample(7, seed=1)
    assert set(sample(7)) <= set(everything)
    out = tmp_path / "corpus"
    with caplog.at_level("INFO"):
        build_corpus(root / "manifest.jsonl", tokens, out, CorpusConfig(wordpiece_min_frequency=1, wordpiece_sample=7))
    assert "training WordPiece on 7 sentences" in caplog.text


def test_a_split_reads_lazily_row_for_row_like_load_corpus(many_videos, tmp_path):
    from videobert.corpus import CorpusSplit

    root, tokens = many_videos
    out = tmp_path / "corpus"
    build_corpus(root / "manifest.jsonl", tokens, out, CorpusConfig(wordpiece_min_frequency=1, videos_per_shard=3))
    split = CorpusSplit(out, "train")
    rows = load_corpus(out, "train")
    assert len(split) == len(rows) and split[5] == rows[5] and split[-1] == rows[-1]
    assert split.text_ids(5).tolist() == rows[5]["text_ids"] and split.video_ids(5).tolist() == rows[5]["video_ids"]
    assert split.text_lengths.tolist() == [len(r["text_ids"]) for r in rows]
    assert [split.video_name(c) for c in split.video_codes] == [r["video_id"] for r in rows]
    assert isinstance(split._tables[0].ragged["text_ids"].values.base, np.memmap)  # a view of the mapped file, not read


def test_videos_without_a_split_are_drawn_by_id_stably_and_small_corpora_get_every_split():
    from videobert.corpus.splits import assign_splits, split_draw
    from videobert.manifest import VideoEntry

    def entries(ids, split=None):
        return [VideoEntry(video_id, Path(f"{video_id}.mp4"), split=split) for video_id in ids]

    many = entries([f"video_{i:04d}" for i in range(2000)])
    drawn, record = assign_splits(many, val_share=0.1, test_share=0.2, seed=7)
    shares = {split: sum(e.split == split for e in drawn) / len(drawn) for split in SPLITS}
    assert abs(shares["test"] - 0.2) < 0.03 and abs(shares["val"] - 0.1) < 0.03
    assert record["drawn"] == 2000 and record["given"] == 0 and record["borrowed"] == {}
    # Adding videos, or listing them in another order, moves none of the others; another seed draws anew.
    more, _ = assign_splits(list(reversed(many)) + entries(["new_1", "new_2"]), 0.1, 0.2, seed=7)
    assert {e.video_id: e.split for e in drawn}.items() <= {e.video_id: e.split for e in more}.items()
    reseeded, _ = assign_splits(many, 0.1, 0.2, seed=8)
    assert [e.split for e in reseeded] != [e.split for e in drawn]
    assert 0 <= split_draw("x", 0) < 1 and split_draw("x", 0) == split_draw("x", 0) != split_draw("x", 1)
    # Six videos: an empty test (then val) takes the train video of the smallest draw, one with speech first.
    six = entries([f"v{i}" for i in range(6)])
    small, record = assign_splits(six, 0.1, 0.1, seed=0, has_text=lambda e: e.video_id != "v3")
    assert {e.split for e in small} == set(SPLITS)
    assert sum(len(ids) for ids in record["borrowed"].values()) == sum(
        e.split != "train" and split_draw(e.video_id, 0) >= 0.2 for e in small)
    assert all(e.video_id != "v3" for split, ids in record["borrowed"].items() for e in small if e.video_id in ids)
    # Splits the manifest gives are kept and count: nothing is borrowed when they fill val and test.
    given = entries(["t"], "test") + entries(["v"], "val") + entries(["a", "b", "c"])
    kept, record = assign_splits(given, 0.0, 0.0, seed=0)
    assert [e.split for e in kept] == ["test", "val", "train", "train", "train"] and record["borrowed"] == {}
    # Two videos cannot fill three splits and keep train: no borrowing.
    two, record = assign_splits(entries(["p", "q"]), 0.0, 0.0, seed=0)
    assert [e.split for e in two] == ["train", "train"] and record["borrowed"] == {}
