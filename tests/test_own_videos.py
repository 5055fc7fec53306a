"""A user's own videos through ``videobert run``: a folder with no split runs every stage, and a
hopeless plan is said before the heavy work."""

from __future__ import annotations

import json
import shutil

import yaml

from tests.conftest import PORTABLE_RUN, run_cli
from tests.test_video import lavfi_video
from videobert.plan import estimate_words

SMALL = {stage: sizes for stage, sizes in PORTABLE_RUN.items() if stage != "synth"}  # its own videos, no synth


def test_the_vocabulary_estimate_follows_which_nodes_split():
    assert estimate_words(252, 12, 4, 39) == 1  # the template on twelve short videos: one word
    assert estimate_words(4564, 12, 2, 4) == 144  # the demo's
    assert estimate_words(4564, 12, 3, 4) == 144  # its third level: 32 clips a node, fewer than 48
    assert estimate_words(10**6, 12, 4, 39) == 20736


def test_a_folder_of_videos_without_splits_runs_every_stage(synth_corpus, tmp_path):
    videos = tmp_path / "my_videos"
    shutil.copytree(synth_corpus / "videos", videos)
    config = {"manifest": str(videos), "transcripts": str(synth_corpus / "transcripts"), "gpus": 0, **SMALL}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("run", path, "-o", tmp_path / "run", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout[result.stdout.index("stage "):]
    for stage in ("extract", "vocab", "tokenize", "corpus", "pretrain", "distil", "evaluate"):
        assert f"{stage} " in table and any(line.split()[:2] == [stage, "ran"] for line in table.splitlines()), table
    splits = [json.loads(line) for line in (tmp_path / "run" / "corpus" / "splits.jsonl").read_text().splitlines()]
    assert {row["split"] for row in splits} == {"train", "val", "test"} and all(row["drawn"] for row in splits)
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["t2v"]["r1"] >= 0
    assert result.stdout.index("plan of") < result.stdout.index("stage ")


def test_a_hopeless_plan_is_a_warning_naming_the_setting_before_extraction_ends(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for index in range(3):
        lavfi_video(videos / f"clip_{index}.mp4", 6.0, size=(64, 48))
    config = {"manifest": "videos", "gpus": 0, "extract": {"size": 112, "fps": 10, "clip_frames": 15, "device": "cpu",
                                                             "precision": "fp32"},
              "vocab": {"k": 12, "depth": 4},  # the paper's tree on 12 clips: one word
              "pretrain": {"preset": "tiny", "steps": 50_000_000, "batch_size": 8, "max_len": 64, "device": "cpu"}}
    path = tmp_path / "hopeless.yaml"
    path.write_text(yaml.safe_dump(config))
    planned = run_cli("plan", path)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "videos        3, 18 s in all" in planned.stdout and "clips         12 of 1.5 s" in planned.stdout
    assert "about 1 (k 12, depth 4" in planned.stdout
    assert "vocab.min_points_per_centroid" in planned.stderr and "pretrain.steps" in planned.stderr
    assert "corpus.test_share" in planned.stderr  # no transcripts: nothing to evaluate
    # videobert run says it first, before extraction has ended
    result = run_cli("run", path, "-o", tmp_path / "run", "--stages", "extract")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.index("vocab.min_points_per_centroid") < result.stderr.index("extract: running")
    assert result.stderr.index("pretrain.steps") < result.stderr.index("extract: running")
