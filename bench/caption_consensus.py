"""The consensus caption baseline's k, chosen on the val split.

    python bench/caption_consensus.py runs/demo/embed --ks 1,3,5,10,20,40

For each feature choice (S3D, VideoBERT, both) of an EMB folder (``videobert embed``; the demo's
is RUN/embed) and each k, every val segment gets the consensus caption of its k nearest train
segments (:func:`videobert.caption.consensus.consensus_captions`; k = 1 is the nearest-neighbour
caption), scored with the COCO caption toolkit (BLEU-4 and CIDEr; METEOR is skipped for speed).
The k with the best CIDEr summed over the three feature choices is printed last: the default of
``caption.consensus_k`` is chosen so. The test split is not read.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videobert.caption.consensus import consensus_captions  # noqa: E402
from videobert.caption.metrics import caption_metrics_sets  # noqa: E402
from videobert.caption.stage import FEATURES, _features, _segment_key  # noqa: E402
from videobert.runtime import cpu_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("embeddings", type=Path, metavar="EMB", help="embeddings folder (videobert embed)")
    parser.add_argument("--ks", default="1,3,5,10,20,40", help="values of k to compare")
    parser.add_argument("--split", default="val", choices=["val"], help="the split k is chosen on (val only)")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    print(f"# consensus caption baseline on {args.embeddings}, {args.split} split, {datetime.date.today()}; {cpu_name()}")
    total = {k: 0.0 for k in ks}
    print(f"{'features':<10}" + "".join(f"{'k=' + str(k):>16}" for k in ks) + "   (CIDEr / BLEU-4)")
    for which in FEATURES:
        train_features, train_rows, _ = _features(args.embeddings, "train", which)
        features, rows, _ = _features(args.embeddings, args.split, which)
        references: dict[str, list[str]] = {}
        first: dict[str, int] = {}
        for i, row in enumerate(rows):
            references.setdefault(_segment_key(row), []).append(str(row["sentence"]))
            first.setdefault(_segment_key(row), i)
        sentences = [r["sentence"] for r in train_rows]
        sets = {}
        for k in ks:
            captions = consensus_captions(train_features, sentences, features, k)
            sets[str(k)] = {key: captions[i] for key, i in first.items()}
        scores = caption_metrics_sets(references, sets, meteor=False)
        cells = []
        for k in ks:
            total[k] += scores[str(k)]["cider"]
            cells.append(f"{scores[str(k)]['cider']:.3f} / {scores[str(k)]['bleu4']:.3f}")
        print(f"{which:<10}" + "".join(f"{c:>16}" for c in cells))
    best = max(ks, key=lambda k: total[k])
    print(f"best k on {args.split} (CIDEr summed over the feature choices): {best}")


if __name__ == "__main__":
    main()
