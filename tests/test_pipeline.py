"""``videobert run``: stage order, skipping what is up to date, rerunning what changed, resuming.

The bookkeeping is tested with a recording stand-in for the stages (fast); test_demo.py runs the
real stages."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from videobert.errors import ConfigError, InputError, StageError
from videobert.runner import STAGE_NAMES, STAGES, Runner, load_run_config, summary_lines
from videobert.store import StageCall

DOWNSTREAM = ["embed", "caption", "forecast"]  # off unless their sections are given
ALL_BUT_ASR = [name for name in STAGE_NAMES if name != "asr" and name not in DOWNSTREAM]


class Recorder:
    """Stands in for the stages: records every call (as the stage's command line, built by its
    launcher) and writes each stage's folder."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.calls: list[tuple[str, list[str]]] = []
        self.fail: set[str] = set()
        self.interrupt: set[str] = set()
        self.splits: dict[str, dict] | None = None  # the corpus's summary.json splits, when given

    def __call__(self, call: StageCall, procs: int) -> None:
        argv = importlib.import_module(f"pipelines.{call.stage}").argv(call)
        self.calls.append((call.stage, argv))
        out = call.out_dir
        out.mkdir(parents=True, exist_ok=True)
        if call.stage == "pretrain":
            (out / "checkpoints").mkdir(exist_ok=True)
        (out / "done").write_text(call.stage)
        for name in next(stage for stage in STAGES if stage.name == call.stage).outputs:
            (out / name).write_text(call.stage)
        if call.stage == "corpus" and self.splits is not None:
            (out / "summary.json").write_text(json.dumps({"clip_seconds": 1.5, "splits": self.splits}))
        if call.stage in self.fail:
            raise InputError(f"{call.stage} stands in for a failure")
        if call.stage in self.interrupt:
            raise KeyboardInterrupt

    def stages(self) -> list[str]:
        names = [stage for stage, _ in self.calls]
        self.calls.clear()
        return names


def write_config(folder: Path, text: str = "") -> Path:
    path = folder / "pipeline.yaml"
    path.write_text("synth: {videos: 4}\nvocab: {k: 4, depth: 2}\npretrain: {preset: tiny, steps: 10}\n" + text)
    return path


def make(tmp_path: Path, *assignments: str, text: str = "") -> tuple[Runner, Recorder]:
    run_dir = tmp_path / "run"
    recorder = Recorder(run_dir)
    cfg = load_run_config(write_config(tmp_path, text), assignments)
    return Runner(cfg, run_dir, recorder), recorder


def test_runs_every_stage_in_order_then_skips_them_all(tmp_path):
    runner, recorder = make(tmp_path)
    results = runner.run()
    assert recorder.stages() == ALL_BUT_ASR
    assert [r.status for r in results] == ["off" if r.name in ("asr", *DOWNSTREAM) else "ran" for r in results]
    state = json.loads((tmp_path / "run" / "pipeline.json").read_text())["stages"]
    assert all(state[name]["status"] == "done" for name in ALL_BUT_ASR)
    for name in ALL_BUT_ASR:
        assert (tmp_path / "run" / "configs" / f"{name}.yaml").is_file()

    again, recorder = make(tmp_path)
    results = again.run()
    assert recorder.stages() == []
    assert {r.status for r in results} == {"skipped", "off"}
    table = "\n".join(summary_lines(results, tmp_path / "run"))
    assert "skipped" in table and "ran" not in table


def test_the_downstream_stages_run_after_evaluate_when_asked_and_follow_their_inputs(tmp_path):
    sections = "embed: {device: cpu}\ncaption: {steps: 5}\nforecast: {context: 4}\n"
    runner, recorder = make(tmp_path, text=sections)
    runner.run()
    assert recorder.stages() == ALL_BUT_ASR + DOWNSTREAM
    runner, recorder = make(tmp_path, "caption.steps=6", text=sections)
    runner.run()
    assert recorder.stages() == ["caption"]
    runner, recorder = make(tmp_path, "pretrain.steps=11", "caption.steps=6", text=sections)
    runner.run()
    assert recorder.stages() == ["pretrain", "distil", "evaluate", "embed", "caption", "forecast"]
    run = tmp_path / "run"
    inputs = make(tmp_path, text=sections)[0].call("embed").inputs
    assert inputs["segments"] == run / "synth" / "segments.jsonl" and inputs["tokens"] == run / "tokens"
    with pytest.raises(ConfigError, match="caption: needs an 'embed' section"):
        make(tmp_path, text="caption: {steps: 5}\n")


def test_changing_the_vocab_config_reruns_vocab_and_what_follows(tmp_path):
    make(tmp_path)[0].run()
    (tmp_path / "run" / "vocab" / "old.txt").write_text("k=4")
    runner, recorder = make(tmp_path, "vocab.k=6")
    runner.run()
    assert recorder.stages() == ["vocab", "tokenize", "corpus", "pretrain", "distil", "evaluate"]
    # The changed stage's old outputs were moved aside, not mixed with the new ones nor deleted.
    assert sorted(p.name for p in (tmp_path / "run" / "vocab").iterdir()) == ["done"]
    kept = sorted((tmp_path / "run" / ".previous").iterdir())
    assert [p.name.split("-")[0] for p in kept] == ["corpus", "evaluate", "pretrain", "tokenize", "vocab"]
    assert (kept[-1] / "old.txt").read_text() == "k=4"
    # Execution-only settings (workers, batch sizes, logging) do not invalidate anything.
    runner, recorder = make(tmp_path, "vocab.k=6", "extract.batch_size=16", "pretrain.log_every=5")
    runner.run()
    assert recorder.stages() == []


def test_force_reruns_a_stage_and_the_ones_after_it(tmp_path):
    make(tmp_path)[0].run()
    runner, recorder = make(tmp_path)
    runner.run(force=["corpus"])
    assert recorder.stages() == ["corpus", "pretrain", "distil", "evaluate"]


def test_a_failed_stage_stops_the_run_and_resumes_when_rerun(tmp_path):
    runner, recorder = make(tmp_path)
    recorder.fail = {"pretrain"}
    with pytest.raises(StageError, match="pretrain"):
        runner.run()
    assert recorder.stages() == ["synth", "extract", "vocab", "tokenize", "corpus", "pretrain"]
    assert runner.results[-1].status == "failed"
    state = json.loads((tmp_path / "run" / "pipeline.json").read_text())["stages"]
    assert state["pretrain"]["status"] == "failed" and "evaluate" not in state

    runner, recorder = make(tmp_path)
    runner.run()
    calls = recorder.calls
    assert [stage for stage, _ in calls] == ["pretrain", "distil", "evaluate"]
    assert "--resume" in calls[0][1]  # same settings: continue from the last checkpoint
    assert (tmp_path / "run" / "model" / "checkpoints").is_dir()


def test_a_folder_the_runner_did_not_make_is_refused_and_left_as_it_was(tmp_path):
    own = tmp_path / "run" / "features"
    own.mkdir(parents=True)
    (own / "mine.npy").write_bytes(b"precious")
    runner, recorder = make(tmp_path)
    with pytest.raises(ConfigError, match=r"run: not empty \(features\) and not a run folder \(no pipeline.json\)"):
        runner.run()
    assert recorder.stages() == [] and [p.name for p in (tmp_path / "run").iterdir()] == ["features"]
    assert (own / "mine.npy").read_bytes() == b"precious"


def test_a_stage_folder_pipeline_json_does_not_record_is_refused(tmp_path):
    """A user's own captions in RUN/transcripts, then speech recognition switched on."""
    make(tmp_path)[0].run()
    captions = tmp_path / "run" / "transcripts"
    captions.mkdir()
    (captions / "v.vtt").write_text("WEBVTT\n")
    runner, recorder = make(tmp_path, text="asr: {}\n")
    with pytest.raises(ConfigError, match="transcripts: this run did not create it"):
        runner.run()
    assert recorder.stages() == [] and (captions / "v.vtt").read_text() == "WEBVTT\n"


def test_prune_deletes_only_what_reruns_set_aside(tmp_path):
    from tests.conftest import run_cli

    make(tmp_path)[0].run()
    make(tmp_path)[0].run(force=["evaluate"])
    kept = list((tmp_path / "run" / ".previous").iterdir())
    assert [p.name.split("-")[0] for p in kept] == ["evaluate"]
    listed = run_cli("prune", tmp_path / "run", "--dry-run")
    assert listed.returncode == 0 and str(kept[0]) in listed.stdout and kept[0].exists()
    assert run_cli("prune", tmp_path / "run").returncode == 0
    assert not kept[0].exists() and (tmp_path / "run" / "eval" / "done").exists()
    refused = run_cli("prune", tmp_path / "run" / "eval")
    assert refused.returncode == 2 and "no pipeline.json" in refused.stderr
    assert (tmp_path / "run" / "eval" / "done").exists()


def test_selected_stages_need_their_inputs_up_to_date(tmp_path):
    runner, recorder = make(tmp_path)
    with pytest.raises(StageError, match="'synth' is not up to date"):
        runner.run(only=["vocab"])
    runner.run()
    recorder.stages()
    runner, recorder = make(tmp_path, "pretrain.steps=20")
    runner.run(only=["pretrain"])
    assert recorder.stages() == ["pretrain"]
    with pytest.raises(ConfigError, match="unknown stage 'train'"):
        runner.run(force=["train"])


def test_stage_arguments_connect_the_folders(tmp_path):
    runner, recorder = make(tmp_path)
    runner.run()
    argv = dict(recorder.calls)
    run = tmp_path / "run"
    assert argv["extract"][:3] == [str(run / "synth" / "manifest.jsonl"), "-o", str(run / "features")]
    assert argv["tokenize"][:5] == [str(run / "features"), "--vocab", str(run / "vocab"), "-o", str(run / "tokens")]
    assert argv["evaluate"][-2:] == ["--labels", str(run / "synth" / "labels.jsonl")]
    assert "--transcripts" not in argv["corpus"]


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="vocab.kk"):
        load_run_config(write_config(tmp_path, "vocab: {kk: 3}\n"))
    with pytest.raises(ConfigError, match="exactly one of"):
        load_run_config(write_config(tmp_path, "manifest: videos.jsonl\n"))


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "mine.yaml"
    path.write_text("manifest: data/manifest.jsonl\nextract: {weights: ../models/s3d.pth}\n")
    cfg = load_run_config(path)
    assert cfg.manifest == tmp_path / "cfg" / "data" / "manifest.jsonl"
    assert cfg.extract.s3d_weights.resolve() == (tmp_path / "models" / "s3d.pth").resolve()


def test_shipped_configs_load():
    configs = Path(__file__).resolve().parents[1] / "pipelines" / "configs"
    for name in ("demo.yaml", "paper.yaml", "my_corpus.yaml"):
        load_run_config(configs / name)  # strict: unknown keys or bad values raise
    paper = load_run_config(configs / "paper.yaml")
    assert (paper.extract.fps, paper.extract.clip_frames, paper.extract.size) == (20, 30, 224)
    assert (paper.vocab.k, paper.vocab.depth) == (12, 4)
    assert (paper.pretrain.preset, paper.pretrain.batch_size, paper.pretrain.lr) == ("large", 128, 1e-5)


def test_a_changed_transcript_reruns_the_corpus_and_what_follows(tmp_path):
    (tmp_path / "v1.mp4").write_bytes(b"video")
    (tmp_path / "manifest.jsonl").write_text('{"video_id": "v1", "video": "v1.mp4"}\n')
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "v1.vtt").write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhello\n")
    config = tmp_path / "pipeline.yaml"
    config.write_text("manifest: manifest.jsonl\ntranscripts: subs\nvocab: {k: 4, depth: 2}\n")
    run_dir = tmp_path / "run"

    def run() -> list[str]:
        recorder = Recorder(run_dir)
        cfg = load_run_config(config)
        Runner(cfg, run_dir, recorder).run()
        return recorder.stages()

    assert run() == ["extract", "vocab", "tokenize", "corpus", "pretrain", "distil", "evaluate"]
    assert run() == []
    (tmp_path / "subs" / "v1.vtt").write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhello there\n")
    assert run() == ["corpus", "pretrain", "distil", "evaluate"]


def test_labels_of_ones_own_need_their_zero_shot_spec_and_evaluate_gets_it(tmp_path):
    labels = tmp_path / "mine" / "labels.jsonl"
    labels.parent.mkdir()
    labels.write_text('{"video_id": "v", "start": 0, "end": 1, "kind": "a"}\n')
    runner, _ = make(tmp_path, f"labels={labels}")
    with pytest.raises(ConfigError, match="labels.jsonl needs the zero-shot spec that classifies it"):
        runner.run()
    assert not (tmp_path / "run" / "pipeline.json").exists()
    spec = labels.parent / "zeroshot.yaml"  # beside the labels: found without being named
    spec.write_text("template: [MASK]\nattributes: {kind: {slot: 1, classes: {a: [a], b: [b]}}}\n")
    runner, recorder = make(tmp_path, f"labels={labels}")
    runner.run()
    evaluate = dict(recorder.calls)["evaluate"]
    assert evaluate[evaluate.index("--zero-shot") + 1] == str(spec) and evaluate[evaluate.index("--labels") + 1] == str(labels)
    named = tmp_path / "other.yaml"
    named.write_text(spec.read_text())
    runner, recorder = make(tmp_path, f"labels={labels}", f"zero_shot={named}")
    runner.run()  # a changed spec reruns evaluate alone
    assert recorder.stages() == ["evaluate"]


def test_stages_that_need_a_split_the_corpus_lacks_are_skipped_with_a_warning(tmp_path, caplog):
    runner, recorder = make(tmp_path)
    recorder.splits = {"train": {"videos": 4, "text_examples": 30}, "val": {"videos": 0, "text_examples": 0},
                       "test": {"videos": 1, "text_examples": 1}}
    results = runner.run()
    assert recorder.stages() == ["synth", "extract", "vocab", "tokenize", "corpus", "pretrain", "distil"]
    evaluate = next(r for r in results if r.name == "evaluate")
    assert evaluate.status == "skipped" and "test split has 1 text-video segments" in evaluate.note
    assert "corpus.test_share" in caplog.text and "evaluate: skipped" in caplog.text
    recorder.splits = {"train": {"videos": 1, "text_examples": 1}}
    runner, _ = make(tmp_path, "corpus.test_share=0.2")
    runner.execute = recorder
    results = runner.run()
    assert recorder.stages() == ["corpus", "pretrain"]
    assert {r.name: r.status for r in results}["distil"] == "skipped"


def test_extract_is_up_to_date_whatever_lists_the_same_videos_and_adding_one_extracts_in_place(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b"):
        (videos / f"{name}.mp4").write_bytes(name.encode())
    config = tmp_path / "pipeline.yaml"
    run_dir = tmp_path / "run"

    def run(manifest: str) -> list[str]:
        config.write_text(f"manifest: {manifest}\nvocab: {{k: 4, depth: 2}}\n")
        recorder = Recorder(run_dir)
        Runner(load_run_config(config), run_dir, recorder).run()
        return recorder.stages()

    assert run("videos")[:1] == ["extract"]
    (tmp_path / "m.jsonl").write_text('{"video_id": "a", "video": "videos/a.mp4", "split": "train"}\n'
                                      '{"video_id": "b", "video": "videos/b.mp4", "split": "test"}\n')
    assert run("m.jsonl") == ["corpus", "pretrain", "distil", "evaluate"]  # the same videos: not extracted again
    (run_dir / "features" / "a.npy").write_bytes(b"kept")
    state = json.loads((run_dir / "pipeline.json").read_text())
    del state["stages"]["extract"]["settings_hash"]  # as an earlier version recorded it
    (run_dir / "pipeline.json").write_text(json.dumps(state))
    assert run("m.jsonl") == []  # up to date, and now its settings are recorded
    (videos / "c.mp4").write_bytes(b"c")
    assert run("videos")[:2] == ["extract", "vocab"]
    assert (run_dir / "features" / "a.npy").read_bytes() == b"kept"  # in place: not set aside
    assert not any(p.name.startswith("extract-") for p in (run_dir / ".previous").iterdir())
    (videos / "b.mp4").unlink()  # a video taken out: its features stop feeding vocab and tokenize
    (run_dir / "features" / "b.npy").write_bytes(b"gone")
    assert run("videos")[:2] == ["extract", "vocab"]
    assert sorted(p.name for p in (run_dir / "features").glob("*.npy")) == ["a.npy"]
    kept = [p for p in (run_dir / ".previous").iterdir() if p.name.startswith("extract-")]
    assert len(kept) == 1 and (kept[0] / "b.npy").read_bytes() == b"gone"
    assert kept[0].name in json.loads((run_dir / "pipeline.json").read_text())["previous"]  # prune deletes it


def test_an_interrupted_stage_is_said_so_and_resuming_is_said_only_where_there_is_something(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    runner, recorder = make(tmp_path)
    recorder.interrupt = {"vocab"}
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert runner.results[-1].status == "interrupted"
    table = "\n".join(summary_lines(runner.results, tmp_path / "run"))
    assert "interrupted" in table and "exit code 130" not in table
    runner, recorder = make(tmp_path)
    recorder.fail = {"pretrain"}
    with pytest.raises(StageError):
        runner.run()
    assert "vocab: running (resuming)" in caplog.text  # its folder holds what the interrupted run wrote
    caplog.clear()
    for path in (tmp_path / "run" / "model").iterdir():
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
    (tmp_path / "run" / "model" / "config.yaml").write_text("{}")
    runner, recorder = make(tmp_path)
    runner.run()
    assert "pretrain: running" in caplog.text and "pretrain: running (resuming)" not in caplog.text
