"""What careless users and hostile files do to the pipeline (docs/robustness.md lists every case).

Each test runs under a timeout (a hang fails it), and asserts what the user gets: a one-line
error that names the file (and the line, where there is one), the other items processed, and
nothing written outside the output folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.eval_data import make_learnable_corpus
from videobert.errors import ConfigError, InputError, StageError

pytestmark = pytest.mark.timeout(180)


def files_under(folder: Path) -> dict[str, int]:
    """Every file below ``folder`` with its size: to show that nothing outside an output folder changed."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file() or p.is_fifo()}


@pytest.fixture
def small(tmp_path):
    """Eight planned videos: tokens, WebVTT transcripts, manifest and a corpus (videos not rendered)."""
    corpus = make_learnable_corpus(tmp_path / "data", videos=8, seed=1)
    root = corpus.parent
    manifest = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    return {"root": root, "corpus": corpus, "manifest": root / "manifest.jsonl", "tokens": root / "tokens",
            "entries": manifest}


def build_corpus(small, out: Path, **settings):
    from videobert import corpus as corpus_stage

    return corpus_stage.run(small["manifest"], small["tokens"], out, corpus_stage.CorpusConfig(**settings))


def failure_records(folder: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (folder / "failures.jsonl").read_text().splitlines())}


# ------------------------------------------------------------------------------------------- hangs
@pytest.mark.parametrize("cue", [
    "9999999999999999999999999:00:00.000 --> 9999999999999999999999999:00:01.000",
    "00:00:01.000 --> 9999999999999999999999999:00:00.000",
], ids=["absurd-start", "absurd-end"])
def test_a_cue_at_an_absurd_time_fails_that_video_only(small, tmp_path, cue):
    victim = small["entries"][0]
    transcript = small["root"] / victim["transcript"]
    transcript.write_text(f"WEBVTT\n\n{cue}\nhello there\n")
    summary = build_corpus(small, tmp_path / "corpus")
    records = failure_records(tmp_path / "corpus")
    assert list(records) == [victim["video_id"]]
    assert records[victim["video_id"]]["reason"].startswith(f"{transcript}:3: cue time beyond")
    assert summary.done == len(small["entries"]) - 1


def test_json_times_of_1e308_fail_that_video_only(small, tmp_path):
    victim = small["entries"][1]
    transcript = small["root"] / "huge.json"
    transcript.write_text(json.dumps({"start": [0.0], "end": [1e308], "text": ["hello there"]}))
    victim["transcript"] = transcript.name
    small["manifest"].write_text("".join(json.dumps(e) + "\n" for e in small["entries"]))
    build_corpus(small, tmp_path / "corpus")
    records = failure_records(tmp_path / "corpus")
    assert list(records) == [victim["video_id"]] and "cue time beyond" in records[victim["video_id"]]["reason"]


def test_clip_ranges_are_closed_form_whatever_the_times():
    from videobert.corpus import overlapping_clips

    assert list(overlapping_clips(0.0, 1e300, 4, 1.5)) == [0, 1, 2, 3]
    assert list(overlapping_clips(1e300, 2e300, 4, 1.5)) == []
    assert list(overlapping_clips(float("nan"), 3.0, 4, 1.5)) == []
    assert list(overlapping_clips(-1e300, 2.0, 4, 1.5)) == [0, 1]


def test_a_fifo_as_transcript_is_refused_not_waited_on(small, tmp_path):
    victim = small["entries"][2]
    transcript = small["root"] / victim["transcript"]
    transcript.unlink()
    os.mkfifo(transcript)
    build_corpus(small, tmp_path / "corpus")
    reason = failure_records(tmp_path / "corpus")[victim["video_id"]]["reason"]
    assert reason == f"{transcript}: transcript is not a regular file (it is a FIFO)"


def test_the_runner_fingerprints_a_manifest_with_a_fifo_without_opening_it(small):
    from videobert.runner import _fingerprint_inputs

    transcript = small["root"] / small["entries"][0]["transcript"]
    transcript.unlink()
    os.mkfifo(transcript)
    assert len(_fingerprint_inputs(small["manifest"], [])) == 16


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_a_device_as_video_is_refused_by_its_kind(tmp_path, kind):
    from videobert.media import grab_frame, has_audio_stream, probe

    if kind == "fifo":
        video = tmp_path / "v.mp4"
        os.mkfifo(video)
        word = "a FIFO"
    else:
        video = Path("/dev/zero")
        word = "a character device"
    for read in (probe, has_audio_stream, lambda p: grab_frame(p, 1.0)):
        with pytest.raises(InputError) as caught:
            read(video)
        assert str(caught.value) == f"{video}: file is not a regular file (it is {word})"


# ------------------------------------------------------------------------------ memory and time
def test_a_model_config_asking_for_huge_sizes_is_refused_before_allocating(tmp_path):
    from videobert.model import ModelConfig, VideoBERT

    model = VideoBERT(ModelConfig.preset("tiny", 20, 10))
    model.save_pretrained(tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    (tmp_path / "run" / "config.json").write_text(json.dumps({**config, "hidden_size": 65536, "intermediate_size": 1 << 17}))
    with pytest.raises(InputError, match=r"model.safetensors: weights do not match config.json \(.* by config.json\)"):
        VideoBERT.from_pretrained(tmp_path / "run")


def test_an_oversized_transcript_is_refused_before_it_is_read(tmp_path):
    from videobert.text import read_transcript

    path = tmp_path / "huge.vtt"
    with open(path, "wb") as handle:  # sparse: 100 MiB claimed, nothing written
        handle.write(b"WEBVTT\n\n")
        handle.truncate(100 << 20)
    with pytest.raises(InputError, match=r"huge.vtt: transcript is 100 MiB, more than the 32 MiB allowed"):
        read_transcript(path)


def test_unclosed_tags_are_stripped_in_linear_time():
    import time

    from videobert.text import clean_text

    def seconds(count: int) -> float:  # the best of five: the least disturbed by other work on the machine
        text = "so " + "<" * count + " then <i>we</i> {\\an8 [ [ cut"
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            assert clean_text(text) == "so " + "<" * count + " then we {\\an8 [ [ cut"
            best = min(best, time.perf_counter() - began)
        return best

    # 8x the input: about 8x the time when linear, 64x when quadratic (what unclosed tags once cost)
    small, large = seconds(20_000), seconds(160_000)
    assert large < 24 * small, (small, large)


def test_deeply_nested_json_is_one_named_error(tmp_path):
    from videobert.store import read_json
    from videobert.text import read_transcript

    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="deep.json: JSON nested too deeply"):
        read_transcript(path)
    with pytest.raises(InputError, match=r"deep.json: cannot read settings \(JSON nested too deeply\)"):
        read_json(path, "settings")


def test_a_features_header_claiming_a_billion_clips_fails_that_video_only(tmp_path):
    from videobert.features.stage import is_complete, load_features
    from videobert.vocab import VocabConfig
    from videobert.vocab import stage as vocab_stage

    features = tmp_path / "features"
    features.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        np.save(features / f"v{index}.npy", rng.standard_normal((20, 1024)).astype(np.float16))
    liar = features / "v0.npy"
    data = bytearray(liar.read_bytes())
    header_end = data.index(b"\n") + 1
    header = data[:header_end].decode("latin1").replace("(20, 1024)", "(1000000000, 1024)")
    liar.write_bytes(header.encode("latin1").ljust(header_end - 1, b" ")[: header_end - 1] + b"\n" + data[header_end:])
    with pytest.raises(InputError, match=r"v0.npy: unreadable features \(its header says \[1000000000, 1024\]"):
        load_features(features, "v0")
    assert not is_complete(liar)
    summary = vocab_stage.run(features, tmp_path / "vocab", VocabConfig(k=2, depth=2, min_points_per_centroid=1,
                                                                        exemplars=False, device="cpu",
                                                                        flat_compare_max_words=0))
    assert summary.failed == 1 and failure_records(tmp_path / "vocab")["v0"]["reason"].startswith(f"{liar}: unreadable")


# --------------------------------------------------------------------------------------- escapes
def test_a_tampered_exemplars_json_never_names_a_file(eval_demo_run, tmp_path):
    from pipelines import vocab as vocab_stage
    from videobert.vocab.stage import exemplar_path

    vocab = tmp_path / "a" / "b" / "vocab"
    shutil.copytree(eval_demo_run["vocab"], vocab)
    entries = json.loads((vocab / "exemplars.json").read_text())
    exemplar_path(vocab, entries[0]["word"]).unlink()  # missing, so a rerun writes it again
    entries[0]["word"] = "../../../escape"
    (vocab / "exemplars.json").write_text(json.dumps(entries))
    outside = {p: s for p, s in files_under(tmp_path).items() if not p.startswith("a/b/vocab/")}
    features = eval_demo_run["vocab"].parent / "features"
    assert vocab_stage.main([str(features), "-o", str(vocab), "--k", "4", "--depth", "2", "--min-points-per-centroid",
                             "2", "--exemplar-size", "64", "--sheet-words", "0", "--device", "cpu", "-q"]) == 0
    assert {p: s for p, s in files_under(tmp_path).items() if not p.startswith("a/b/vocab/")} == outside
    rebuilt = json.loads((vocab / "exemplars.json").read_text())
    assert all(isinstance(e["word"], int) and exemplar_path(vocab, e["word"]).is_file() for e in rebuilt)
    with pytest.raises(TypeError):
        exemplar_path(vocab, "../../escape")


def test_a_playlist_in_a_manifest_reads_no_other_file(synth_corpus, tmp_path):
    from videobert.media import ClipReader, probe

    other = sorted((synth_corpus / "videos").glob("*.mp4"))[0]
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:60\n#EXTINF:60,\n{other}\n#EXT-X-ENDLIST\n")
    with pytest.raises(InputError, match="list.m3u8: not a media container this pipeline reads"):
        probe(playlist)
    with ClipReader(playlist, fps=10, clip_frames=15, size=32) as reader:
        with pytest.raises(InputError, match="ffmpeg could not decode it"):
            list(reader)
        assert reader.frames == 0


# ------------------------------------------------------------------------- names and line ends
def test_temporary_names_stay_within_255_bytes_whatever_the_host(tmp_path, monkeypatch):
    from videobert import store

    clear = getattr(getattr(store, "_host_tag", None), "cache_clear", lambda: None)  # the host is read once
    monkeypatch.setattr(socket, "gethostname", lambda: "pod-" + "x" * 250)
    clear()
    try:
        target = tmp_path / ("a" * 200 + ".npy")
        store.atomic_save_npy(target, np.zeros(3))
        assert np.load(target).shape == (3,)
        assert len(store.temp_path_for(tmp_path / ("é" * 127 + ".npy")).name.encode()) <= 255
    finally:
        monkeypatch.undo()
        clear()


def test_ids_with_a_trailing_newline_or_a_null_video_are_refused_with_the_line(tmp_path):
    from videobert.manifest import read_manifest

    for line, problem in ((json.dumps({"video_id": "v1\n", "video": "v.mp4"}), "not a safe file stem"),
                          (json.dumps({"video_id": "v1", "video": None}), "'video' must be a non-empty path string")):
        manifest = tmp_path / "manifest.jsonl"
        manifest.write_text(json.dumps({"video_id": "v0", "video": "a.mp4"}) + "\n" + line + "\n")
        with pytest.raises(InputError, match=f"manifest.jsonl:2: .*{problem}"):
            read_manifest(manifest)


def test_line_separators_inside_values_do_not_split_jsonl_or_captions(tmp_path):
    from videobert.manifest import read_manifest
    from videobert.text import read_transcript

    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"video_id": "v", "video": "a\u2028b\u0085c.mp4"}, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    assert read_manifest(manifest)[0].video.name == "a\u2028b\u0085c.mp4"
    vtt = tmp_path / "t.vtt"
    vtt.write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhello\u2028there\n\n00:00:03.000 --> oops\nx\n",
                   encoding="utf-8")
    with pytest.raises(InputError, match=r"t.vtt:6: "):  # line numbers count \n, not U+2028
        read_transcript(vtt)


# ------------------------------------------------------------------------------ corpus as a unit
def test_a_corpus_killed_mid_way_is_refused_by_pretrain(small, tmp_path, monkeypatch):
    from videobert.corpus import stage as corpus_stage
    from videobert.pretrain import PretrainConfig
    from videobert.pretrain import stage as pretrain_stage

    corpus = tmp_path / "corpus"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus_stage, "build_shard", killed)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(small, corpus)
    monkeypatch.undo()
    assert (corpus / "vocabulary.json").exists()  # written before the shards
    cfg = PretrainConfig(preset="tiny", steps=2, batch_size=4, device="cpu", max_len=32)
    with pytest.raises(InputError, match=r"corpus: not a finished corpus \(no summary.json"):
        pretrain_stage.run(corpus, tmp_path / "run", cfg)


# ------------------------------------------------------------------------------- named errors
def test_a_truncated_codebook_is_a_named_error(tmp_path):
    from videobert.vocab.codebook import Codebook

    path = tmp_path / "codebook.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("k.npy", b"x" * 1000)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InputError, match=r"codebook.npz: unreadable codebook \(BadZipFile"):
        Codebook.load(path, device="cpu")


@pytest.fixture(scope="module")
def trained(pretrain_corpus, tmp_path_factory):
    """A tiny run with checkpoints at steps 4 and 8."""
    from videobert.pretrain import PretrainConfig
    from videobert.pretrain import stage as pretrain_stage

    run_dir = tmp_path_factory.mktemp("robust") / "run"
    cfg = PretrainConfig(preset="tiny", steps=8, save_every=4, keep_checkpoints=2, batch_size=8, max_len=48,
                         device="cpu", warmup=2, eval_every=0, eval_sentences=16)
    pretrain_stage.run(pretrain_corpus, run_dir, cfg)
    return run_dir, cfg


def resume_copy(trained, tmp_path) -> tuple[Path, object]:
    """A copy of the trained run as a kill after its last checkpoint leaves it (no summary.json)."""
    run_dir, cfg = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "summary.json").unlink()
    return copy, cfg


def test_a_cut_log_and_a_corrupt_summary_do_not_block_resume(trained, pretrain_corpus, tmp_path, caplog):
    from videobert.pretrain import stage as pretrain_stage

    run_dir, cfg = resume_copy(trained, tmp_path)
    with open(run_dir / "log.jsonl", "a") as handle:
        handle.write('{"step": 9, "spl')
    (run_dir / "summary.json").write_text("{not json")
    summary = pretrain_stage.run(pretrain_corpus, run_dir, cfg, resume=True)
    assert summary.done == 0 and json.loads((run_dir / "summary.json").read_text())["steps"] == 8
    assert all(json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines())
    assert "summary.json: cannot read run summary" in caplog.text and "log.jsonl:" in caplog.text


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(trained, pretrain_corpus, tmp_path, caplog):
    from videobert.pretrain import stage as pretrain_stage
    from videobert.training import checkpoint_dir

    run_dir, cfg = resume_copy(trained, tmp_path)
    state = checkpoint_dir(run_dir, 8) / "training_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    summary = pretrain_stage.run(pretrain_corpus, run_dir, cfg, resume=True)
    assert summary.skipped == 4 and summary.done == 4  # resumed at step 4, trained to 8
    assert "training_state.pt: not a readable training state" in caplog.text
    assert "falling back to the previous checkpoint" in caplog.text and "possibly" not in caplog.text


def test_disk_full_during_a_checkpoint_says_so_and_keeps_the_earlier_ones(trained, pretrain_corpus, tmp_path, monkeypatch):
    import torch

    from videobert.pretrain import stage as pretrain_stage
    from videobert.training import list_checkpoints

    run_dir, cfg = resume_copy(trained, tmp_path)
    shutil.rmtree(run_dir / "checkpoints" / "step-00000008")  # killed before it: resumes at 4, saves 8

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(StageError, match=r"checkpoints: no space left on device while writing checkpoint 8; "
                                         "the earlier checkpoints are intact"):
        pretrain_stage.run(pretrain_corpus, run_dir, cfg, resume=True)
    assert [step for step, _ in list_checkpoints(run_dir)] == [4]
    assert not list((run_dir / "checkpoints").glob(".*"))


# ----------------------------------------------------------------------- a user's own corpus
def test_a_manifest_without_splits_gets_them_drawn_and_without_val_pretrains_on_held_out_train_videos(small, tmp_path):
    from videobert.pretrain import PretrainConfig
    from videobert.pretrain import stage as pretrain_stage

    for entry in small["entries"]:
        entry.pop("split", None)
    small["manifest"].write_text("".join(json.dumps(e) + "\n" for e in small["entries"]))
    drawn = build_corpus(small, tmp_path / "drawn").details
    assert all(drawn["splits"][split]["videos"] >= 1 for split in ("train", "val", "test"))
    assert drawn["split_draw"]["drawn"] == 8
    corpus = tmp_path / "corpus"
    build_corpus(small, corpus, val_share=0.0, test_share=0.0)  # every video in train
    assert json.loads((corpus / "summary.json").read_text())["splits"]["val"]["examples"] == 0
    cfg = PretrainConfig(preset="tiny", steps=3, batch_size=4, max_len=48, device="cpu", warmup=1, val_share=0.25)
    first = pretrain_stage.run(corpus, tmp_path / "run", cfg).details["validation"]
    assert first["source"] == "held out of train" and first["videos"] == 2
    again = pretrain_stage.run(corpus, tmp_path / "again", cfg).details["validation"]
    assert again == first  # chosen by seed: the same on every run and resume


def test_gpus_zero_runs_every_stage_on_the_cpu(tmp_path):
    from videobert.runner import Runner, load_run_config

    config = tmp_path / "pipeline.yaml"
    config.write_text("synth: {videos: 4}\ngpus: 0\n")
    runner = Runner(load_run_config(config), tmp_path / "run")
    assert all(runner.stage_config(name).device == "cpu" for name in ("extract", "vocab", "tokenize", "pretrain", "evaluate"))


# ------------------------------------------------------------------------------------ queries
def test_a_query_of_unknown_words_is_refused_and_top_k_0_too(eval_demo_run):
    from videobert.dual import load_dual
    from videobert.inference import load_model
    from videobert.retrieval.gallery import gallery_segments
    from videobert.search import Searcher, segments_index

    loaded = load_model(eval_demo_run["run"], "cpu")
    dual = load_dual(eval_demo_run["run"], loaded)
    searcher = Searcher(loaded, dual, segments_index(dual, loaded, gallery_segments(eval_demo_run["corpus"], "test")))
    with pytest.raises(ConfigError, match=r"has no WordPiece the model knows .every piece is \[UNK\]"):
        searcher.search("🙂 ☃")
    with pytest.raises(ConfigError, match="top_k: need a whole number >= 1"):
        searcher.search("the red circle", top_k=0)
    with pytest.raises(ConfigError, match="the query is empty"):
        searcher.search("   ")


# -------------------------------------------------------------------------------------- videos
def test_a_video_damaged_in_the_middle_is_not_extracted_as_ok(synth_corpus, tmp_path):
    from videobert.media import ClipReader, probe

    source = sorted((synth_corpus / "videos").glob("*.mp4"))[0]
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 4000] = bytes(4000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with ClipReader(damaged, fps=10, clip_frames=15, size=32, expected_seconds=probe(damaged).duration) as reader:
        with pytest.raises(InputError, match="damaged.mp4: (damaged|truncated or corrupt)"):
            list(reader)


# ------------------------------------------------------------------------------ one writer a folder
def test_a_second_writer_of_a_folder_is_refused(tmp_path):
    from videobert.store import FailureLog

    with FailureLog(tmp_path / "failures.jsonl") as first:
        first.record("a", "kept", "error")
        with pytest.raises(StageError, match=r"another run is writing into this folder \(pid \d+ on "):
            FailureLog(tmp_path / "failures.jsonl")
        assert (tmp_path / "failures.jsonl").read_text().count("kept") == 1  # not truncated by the refused one
    with FailureLog(tmp_path / "failures.jsonl"):  # free again once the first is done
        pass


def test_a_second_pretrain_into_the_same_folder_is_refused(trained, pretrain_corpus, tmp_path):
    from videobert.pretrain import stage as pretrain_stage
    from videobert.store import FolderLock

    run_dir, cfg = resume_copy(trained, tmp_path)
    before = files_under(run_dir)
    with FolderLock(run_dir / ".pretrain.lock"):  # what the first run holds while it trains
        with pytest.raises(StageError, match=r"run: another run is writing into this folder"):
            pretrain_stage.run(pretrain_corpus, run_dir, cfg, resume=True)
    assert files_under(run_dir) == before
