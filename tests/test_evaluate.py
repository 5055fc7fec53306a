"""The evaluate and retrieve commands on a small real run: tables, metrics.json, contact sheets, errors."""

import json

import pytest
from PIL import Image

from pipelines import evaluate as evaluate_stage
from pipelines import retrieve as retrieve_stage
from tests.conftest import run_cli
from videobert.corpus import load_corpus

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def test_evaluate_prints_each_figure_beside_chance_and_writes_metrics_json(eval_demo_run):
    run, corpus = eval_demo_run["run"], eval_demo_run["corpus"]
    result = run_cli("evaluate", run, "--corpus", corpus, "--split", "train", "--two-stage", "3", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    out = run / "eval-train"
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "config.yaml").exists() and not list(out.glob(".*.tmp.*"))

    n = metrics["gallery"]
    assert n >= 10 and metrics["split"] == "train"
    for direction in ("t2v", "v2t"):
        m = metrics[direction]
        assert set(m) >= {"r1", "r5", "r10", "median_rank", "mean_rank", "chance_r1", "chance_r5", "chance_r10"}
        assert m["chance_r1"] == 1 / n and m["chance_r10"] == 10 / n
        assert 0 <= m["r1"] <= m["r5"] <= m["r10"] <= 1 and 1 <= m["median_rank"] <= n
    assert 0 <= metrics["align_accuracy"] <= 1
    # labels.jsonl beside the corpus's manifest is found without --labels
    assert set(metrics["zero_shot"]) == {"colour", "shape", "action"}
    for attribute in metrics["zero_shot"].values():
        assert set(attribute) >= {"top1", "top5", "chance_top1", "prior_top1"}
    two_stage = metrics["two_stage"]
    assert two_stage["k"] == 3 and set(two_stage["recall_cost"]) == {"t2v", "v2t"}
    assert two_stage["chance_first_stage_recall"] == 3 / n and set(two_stage["dual"]) == {"t2v", "v2t"}

    table = result.stdout
    for line in ("text → video", "video → text", "two-stage K=3 t→v", "dual encoder t→v", "chance", "alignment accuracy",
                 "zero-shot", "colour"):
        assert line in table
    chance_row = next(line for line in table.splitlines() if line.startswith("chance"))
    assert f"{1 / n:.3f}" in chance_row and f"{(n + 1) / 2:.1f}" in chance_row


def test_evaluate_with_given_labels_spec_and_output_folder(eval_demo_run, tmp_path, capsys):
    spec = tmp_path / "colour.yaml"
    spec.write_text("template: now the [MASK] [MASK]\nattributes:\n  colour:\n    slot: 1\n"
                    "    classes: {red: [red], green: [green], blue: [blue], yellow: [yellow, gold]}\n")
    out = tmp_path / "eval"
    code = evaluate_stage.main([str(eval_demo_run["run"]), "--corpus", str(eval_demo_run["corpus"]), "--split", "train",
                                "--labels", str(eval_demo_run["labels"]), "--zero-shot", str(spec), "-o", str(out),
                                "--ties", "pessimistic", "--device", "cpu", "-q"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ties"] == "pessimistic"
    colour = metrics["zero_shot"]["colour"]
    assert colour["classes"] == 4 and colour["chance_top1"] == 0.25 and colour["chance_top5"] == 1.0
    # only segments labelled with one of the four classes count
    labelled = [json.loads(line) for line in eval_demo_run["labels"].read_text().splitlines()]
    train_videos = {e["video_id"] for e in load_corpus(eval_demo_run["corpus"], "train")}
    assert colour["segments"] == sum(r["video_id"] in train_videos and r["colour"] in ("red", "green", "blue", "yellow")
                                     for r in labelled)


def test_evaluate_two_stage_alone_reports_its_own_ranking(eval_demo_run, tmp_path):
    out = tmp_path / "two-stage"
    code = evaluate_stage.main([str(eval_demo_run["run"]), "--corpus", str(eval_demo_run["corpus"]), "--split", "train",
                                "--two-stage", "2", "--no-exhaustive", "-o", str(out), "--device", "cpu", "-q"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["t2v"]["r1"] == metrics["two_stage"]["t2v"]["r1"] and "recall_cost" not in metrics["two_stage"]
    assert metrics["pairs_scored"] == 2 * 2 * metrics["gallery"]


@pytest.mark.parametrize("args, code, message", [
    (["--no-exhaustive", "--two-stage", "0"], 2, "two-stage"),
    (["--split", "nope"], 2, "invalid choice"),
    (["--set", "tie=average"], 2, "did you mean 'ties'"),
])
def test_evaluate_usage_errors(eval_demo_run, capsys, args, code, message):
    assert evaluate_stage.main([str(eval_demo_run["run"]), "--corpus", str(eval_demo_run["corpus"]), *args]) == code
    assert message in capsys.readouterr().err


def test_a_bad_zero_shot_spec_or_labels_file_stops_evaluate_before_scoring(eval_demo_run, tmp_path, capsys, monkeypatch):
    import videobert.retrieval.stage

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored pairs before reading the zero-shot inputs")

    monkeypatch.setattr(videobert.retrieval.stage, "exhaustive_counts", no_scoring)
    spec = tmp_path / "spec.yaml"
    spec.write_text("template: now the [MASK]\nattributes: {colour: {slot: 3, classes: {red: red, blue: blue}}}\n")
    base = [str(eval_demo_run["run"]), "--corpus", str(eval_demo_run["corpus"]), "-o", str(tmp_path / "out"), "-q"]
    assert evaluate_stage.main([*base, "--zero-shot", str(spec)]) == 2
    assert "slot" in capsys.readouterr().err
    assert evaluate_stage.main([*base, "--labels", str(tmp_path / "missing.jsonl")]) == 1
    assert "labels file not found" in capsys.readouterr().err


def test_evaluate_refuses_a_corpus_of_another_vocabulary_in_one_line(eval_demo_run, tmp_path, capsys):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(eval_demo_run["corpus"], corpus)
    vocabulary = json.loads((corpus / "vocabulary.json").read_text())
    (corpus / "vocabulary.json").write_text(json.dumps({**vocabulary, "visual_vocab_size": 999}))
    code = evaluate_stage.main([str(eval_demo_run["run"]), "--corpus", str(corpus), "-o", str(tmp_path / "out"), "-q"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(error) == 1 and "visual_vocab_size" in error[0]
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_retrieve_prints_ranked_hits_and_writes_a_contact_sheet(eval_demo_run, tmp_path):
    sheet = tmp_path / "hits.jpg"
    result = run_cli("retrieve", eval_demo_run["run"], "the red circle moves to the left", "--corpus",
                     eval_demo_run["corpus"], "--split", "all", "--top-k", "3", "--sheet", sheet, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["rank", "video_id", "start", "end", "score"]
    hits = [line.split() for line in lines[1:4]]
    assert [int(h[0]) for h in hits] == [1, 2, 3]
    scores = [float(h[4]) for h in hits]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    assert all(h[1].startswith("synth_") and float(h[2]) < float(h[3]) for h in hits)
    with Image.open(sheet) as image:
        assert image.format == "JPEG" and image.width == 3 * 160


def test_retrieve_an_unknown_query_is_a_usage_error(eval_demo_run, capsys):
    code = retrieve_stage.main([str(eval_demo_run["run"]), "   ", "--corpus", str(eval_demo_run["corpus"]), "-q"])
    assert code == 2 and "the query is empty" in capsys.readouterr().err
    code = retrieve_stage.main([str(eval_demo_run["run"]), "🙂 ☃", "--corpus", str(eval_demo_run["corpus"]), "-q"])
    assert code == 2 and "no WordPiece" in capsys.readouterr().err


def test_evaluate_under_torchrun_equals_one_process_and_large_galleries_sample_queries(eval_demo_run, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    base = [str(eval_demo_run["run"]), "--corpus", str(eval_demo_run["corpus"]), "--split", "train", "--device", "cpu"]
    assert evaluate_stage.main([*base, "-o", str(tmp_path / "one"), "-q"]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIDEOBERT_PROGRESS": "0"}
    ranks = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "-m", "pipelines.evaluate",
                            *base, "-o", str(tmp_path / "two"), "-q"], env=env, capture_output=True, text=True, timeout=600)
    assert ranks.returncode == 0, ranks.stderr
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for key in ("t2v", "v2t", "align", "pairs_scored", "unique_pairs_scored"):
        assert two[key] == one[key], key

    n = one["gallery"]
    assert evaluate_stage.main([*base, "-o", str(tmp_path / "sampled"), "--exhaustive-limit", "5", "--sample-queries", "6",
                                "-q"]) == 0
    sampled = json.loads((tmp_path / "sampled" / "metrics.json").read_text())
    assert sampled["queries"] == {"ranked": 6, "scoring": "seeded query sample", "seed": 0}
    assert sampled["pairs_scored"] == 2 * 6 * n - 36 and sampled["t2v"]["chance_r1"] == one["t2v"]["chance_r1"]
    forced = tmp_path / "forced"
    assert evaluate_stage.main([*base, "-o", str(forced), "--exhaustive-limit", "5", "--exhaustive", "-q"]) == 0
    assert json.loads((forced / "metrics.json").read_text())["t2v"] == one["t2v"]
