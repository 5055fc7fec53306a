"""``videobert demo`` end to end on a smaller corpus: every stage's outputs, metrics above chance,
a rerun that skips everything, and a vocab change that reruns vocab and the stages after it."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from tests.conftest import run_cli

# The demo config on fewer videos, a smaller model and a shorter run (the full demo: .ci/run).
SMALL = [
    "--set", "synth.videos=96",
    "--set", "pretrain.steps=8000", "--set", "pretrain.save_every=4000",
    # the narrower model of the tiny preset trains 2.5x faster and learns colour and alignment
    "--set", "pretrain.hidden_size=64", "--set", "pretrain.heads=2", "--set", "pretrain.intermediate_size=256",
    "--set", "pretrain.mask_prob=0.15",
    # words from standardised features: this narrow model ranks text->video from them above chance,
    # but not from the demo's unit-length words (mean rank 32.7 of 73, chance 37), which need the
    # demo's 128-unit model (BENCHMARKS.md, the demo)
    "--set", "vocab.normalise=standardise",
    # and without the demo's forecasting sequences and weight decay, which this narrow model was not
    # tuned with (with them its mean rank fell to 35.9 of 73); the full demo trains with them
    "--set", "pretrain.forecast_prob=0", "--set", "pretrain.weight_decay=0.01",
    "--set", "caption.steps=100", "--set", "distil.steps=100",
    # and with dropout on its attention, as it was tuned (the full demo turns it off)
    "--set", "pretrain.attention_dropout=null",
    # the bars are the full demo's promise (checked where it runs: .ci/run); this smaller run asserts
    # its own figures below
    "--set", "bars=null",
]
STAGES = ["synth", "extract", "vocab", "tokenize", "corpus", "pretrain", "distil", "evaluate", "embed", "caption",
          "forecast"]


def statuses(stdout: str) -> dict[str, str]:
    """Stage -> status from the run's closing table."""
    return dict(re.findall(r"^(\w+)\s+(ran|skipped|off|failed)\b", stdout, flags=re.M))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    result = run_cli("demo", "--out", out, *SMALL, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_every_stage_ran_and_wrote_its_outputs(demo):
    out, result = demo
    assert statuses(result.stdout) == {**{s: "ran" for s in STAGES}, "asr": "off"}
    manifest = [json.loads(line) for line in (out / "synth" / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 96 and {m["split"] for m in manifest} == {"train", "val", "test"}
    features = sorted((out / "features").glob("*.npy"))
    assert len(features) == 96
    first = np.load(features[0])
    assert first.shape[1] == 1024 and first.dtype == np.float16 and np.isfinite(first).all()
    extract = json.loads((out / "features" / "extract.json").read_text())
    assert (extract["fps"], extract["clip_frames"], extract["size"]) == (10, 15, 112)
    vocab = json.loads((out / "vocab" / "vocab.json").read_text())
    assert 12 < vocab["vocab_size"] <= 144 and (out / "vocab" / "exemplars.jpg").is_file()
    assert len(list((out / "tokens").glob("*.npy"))) == 96
    summary = json.loads((out / "corpus" / "summary.json").read_text())
    assert summary["splits"]["test"]["text_examples"] > 0
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "config.json").is_file()
    state = json.loads((out / "pipeline.json").read_text())["stages"]
    assert all(state[s]["status"] == "done" for s in STAGES)
    for stage in STAGES:
        assert (out / "configs" / f"{stage}.yaml").is_file()


def test_metrics_beat_chance_and_the_demo_says_what_to_do_next(demo):
    out, result = demo
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    t2v = metrics["t2v"]
    # Held-out videos: the model ranks the right segment well above a random ranking...
    assert t2v["mean_rank"] < 0.8 * t2v["chance_mean_rank"], t2v
    # ...and reads the colour off the visual words (chance 1/6) better than the text alone.
    colour = metrics["zero_shot"]["colour"]
    assert colour["top1"] >= 2 * colour["chance_top1"] and colour["top1"] > colour["prior_top1"], colour
    assert "alignment accuracy" in result.stdout and "chance" in result.stdout
    assert "videobert retrieve" in result.stdout and "jupyter notebook" in result.stdout
    # the captioners, each beside the nearest-neighbour caption, and forecasting beside its baselines
    assert re.search(r"both\s+captioner\s+BLEU-3", result.stdout) and "nearest neighbour" in result.stdout
    assert re.search(r"^forecast \(test, \d+ next words", result.stdout, flags=re.M)
    assert re.search(r"^model - bigram: top-1 [+-]\d\.\d{3} \(95 % interval ", result.stdout, flags=re.M)
    assert re.search(r"^log-loss, nats a word \(lower is better\): model \d\.\d{3} \| bigram ", result.stdout, flags=re.M)


def test_a_run_with_its_own_labels_classifies_with_its_own_zero_shot_spec(demo, tmp_path):
    """Labels that are not the synthetic corpus's, and the spec that classifies them, given in the
    run config: evaluate (the only stage whose inputs changed) classifies with that spec alone."""
    out, _ = demo
    run = tmp_path / "run"
    shutil.copytree(out, run, symlinks=True)
    warm = {"red", "orange", "yellow"}
    rows = [json.loads(line) for line in (out / "synth" / "labels.jsonl").read_text().splitlines()]
    labels = tmp_path / "mine" / "labels.jsonl"
    labels.parent.mkdir()
    labels.write_text("".join(json.dumps({"video_id": r["video_id"], "start": r["start"], "end": r["end"],
                                          "warmth": "warm" if r["colour"] in warm else "cool"}) + "\n" for r in rows))
    spec = tmp_path / "mine" / "warmth.yaml"  # not beside the labels under the default name: given in the config
    spec.write_text("template: now the [MASK] [MASK] [MASK] [MASK]\nattributes:\n  warmth:\n    slot: 1\n    classes:\n"
                    "      warm: [red, orange, yellow]\n      cool: [green, blue, purple]\n")
    result = run_cli("demo", "--out", run, *SMALL, "--set", f"labels={labels}", "--set", f"zero_shot={spec}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert statuses(result.stdout)["evaluate"] == "ran" and statuses(result.stdout)["pretrain"] == "skipped"
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(metrics["zero_shot"]) == {"warmth"} and metrics["zero_shot_spec"] == str(spec)
    assert metrics["zero_shot"]["warmth"]["chance_top1"] == 0.5
    assert "colour" in json.loads((out / "eval" / "metrics.json").read_text())["zero_shot"]  # the demo's own spec


def test_rerun_skips_every_stage_and_a_vocab_change_reruns_what_follows(demo):
    out, _ = demo
    again = run_cli("demo", "--out", out, *SMALL, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert statuses(again.stdout) == {**{s: "skipped" for s in STAGES}, "asr": "off"}
    assert "up to date" in again.stderr

    changed = run_cli("demo", "--out", out, *SMALL, "--set", "vocab.k=6", "--set", "pretrain.steps=500", timeout=900)
    assert changed.returncode == 0, changed.stderr[-3000:]
    expected = {"synth": "skipped", "extract": "skipped", "asr": "off",
                **{s: "ran" for s in ("vocab", "tokenize", "corpus", "pretrain", "distil", "evaluate", "embed", "caption",
                                      "forecast")}}
    assert statuses(changed.stdout) == expected
    assert json.loads((out / "vocab" / "vocab.json").read_text())["k"] == 6
