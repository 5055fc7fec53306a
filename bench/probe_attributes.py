"""Where does the video carry an attribute, and where is it lost? Linear probes along the pipeline.

    python bench/probe_attributes.py runs/demo          # a run folder of `videobert demo` (or `videobert run` on synth)

For every labelled segment of the synthetic corpus (colour, shape, action), three representations
of its video are probed with a logistic regression trained on the train split's segments and
scored on the val split's (``--split test`` only to report a choice already made: choices are made
on val), beside chance and the majority class:

* S3D features: the mean 1024-d clip feature over the clips the segment overlaps (FEATURES);
* visual words: the segment's bag of visual words, normalised (TOKENS);
* the model's states: the mean final hidden state of the video tokens of
  ``[CLS] [>] video [SEP]`` (the trained VideoBERT, no text).

An attribute the features carry but the visual words do not was lost in the vocabulary; one the
words carry but the states do not, in training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videobert.corpus.align import overlapping_clips  # noqa: E402
from videobert.features import load_features  # noqa: E402
from videobert.manifest import read_manifest  # noqa: E402
from videobert.inputs import build_input, collate_inputs  # noqa: E402
from videobert.inference import load_model  # noqa: E402
from videobert.synthetic import ATTRIBUTES, read_labels  # noqa: E402
from videobert.vocab import load_tokens  # noqa: E402


def segments(run: Path) -> list[dict]:
    """The labelled segments with their split and the clips they overlap."""
    split = {e.video_id: e.split for e in read_manifest(run / "synth" / "manifest.jsonl")}
    clip_seconds = json.loads((run / "features" / "extract.json").read_text())["clip_seconds"]
    tokens = load_tokens(run / "tokens")
    rows = []
    for row in read_labels(run / "synth" / "labels.jsonl"):
        words = tokens.get(row["video_id"])
        if words is None:
            continue
        clips = overlapping_clips(row["start"], row["end"], len(words), clip_seconds)
        if clips:
            rows.append({**row, "split": split[row["video_id"]], "clips": clips})
    return rows


@torch.no_grad()
def model_states(run: Path, rows: list[dict], tokens: dict[str, np.ndarray]) -> np.ndarray:
    loaded = load_model(run / "model", device="cpu")
    out = []
    for row in rows:
        words = tokens[row["video_id"]][row["clips"].start : row["clips"].stop]
        batch = collate_inputs([build_input(loaded.layout, None, words, loaded.max_len)], loaded.layout.pad_id)
        states = loaded.model(batch["input_ids"], batch["token_type_ids"]).hidden_states[0]
        video = batch["input_ids"][0] >= loaded.layout.visual_offset
        out.append(states[video].mean(0).numpy())
    return np.stack(out)


def probe(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    scaler = StandardScaler().fit(x[train])
    classifier = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(x[train]), y[train])
    return float((classifier.predict(scaler.transform(x[~train])) == y[~train]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run folder with synth/, features/, tokens/, model/")
    parser.add_argument("--split", default="val", choices=["val", "test"],
                        help="split the probes are scored on (default val, where choices are made)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = segments(args.run)
    tokens = load_tokens(args.run / "tokens")
    vocab_size = int(json.loads((args.run / "tokens" / "tokens.json").read_text())["vocab_size"])
    features = np.stack([
        load_features(args.run / "features", r["video_id"])[r["clips"].start : r["clips"].stop].astype(np.float64).mean(0)
        for r in rows
    ])
    words = np.stack([
        np.bincount(tokens[r["video_id"]][r["clips"].start : r["clips"].stop], minlength=vocab_size) / len(r["clips"])
        for r in rows
    ])
    states = model_states(args.run, rows, tokens)
    train = np.array([r["split"] == "train" for r in rows])
    test = np.array([r["split"] == args.split for r in rows])  # the split scored
    keep = train | test
    print(f"{args.run}: {int(train.sum())} train / {int(test.sum())} {args.split} labelled segments")
    print(f"{'attribute':<10}{'chance':>8}{'majority':>10}{'S3D':>8}{'words':>8}{'states':>8}")
    for attribute, classes in ATTRIBUTES.items():
        y = np.array([classes.index(r[attribute]) for r in rows])
        majority = float((y[test] == np.bincount(y[train]).argmax()).mean())
        scores = [probe(x[keep], y[keep], train[keep]) for x in (features, words, states)]
        print(f"{attribute:<10}{1 / len(classes):>8.3f}{majority:>10.3f}" + "".join(f"{s:>8.3f}" for s in scores))


if __name__ == "__main__":
    main()
