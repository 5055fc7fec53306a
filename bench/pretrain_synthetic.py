"""What a small VideoBERT learns on the synthetic corpus: validation accuracies against chance.

    python bench/pretrain_synthetic.py --corpus features --steps 6000
    python bench/pretrain_synthetic.py --corpus words --signal 0.9 --steps 6000 \
        --set concat_prob=0 --set subsample_max=1 --set pair_share=0.8

Two corpora from the synthetic generator's plans, without rendering (tests/pretrain_corpus.py):

* ``features``: the pipeline after extraction. Each 1.5 s clip gets a 1024-d feature mixing a
  colour direction, an action direction, the video's background and noise; the vocab stage
  clusters them (k=8, depth 2), tokenize and corpus make the corpus, and pretraining starts the
  visual-word embeddings from the codebook centroids.
* ``words``: each clip's visual word is ``colour·6 + action`` of its segment with probability
  ``--signal``, another word otherwise (48 words, random visual-word embeddings).

Prints the validation curve (masked-token accuracy per objective and modality, alignment
accuracy) and the chance levels; ``--set key=value`` changes any pretraining option.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pretrain_corpus import make_feature_corpus, make_pretrain_corpus  # noqa: E402
from videobert import config as cfgmod  # noqa: E402
from videobert.pretrain import PretrainConfig  # noqa: E402
from videobert.pretrain import run as pretrain  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("features", "words"), default="features")
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--signal", type=float, default=0.9, help="words: probability that a clip's word is its meaning")
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models run best on one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="videobert-synthetic-") as tmp:
        vocab_dir = None
        if args.corpus == "features":
            corpus, vocab_dir = make_feature_corpus(Path(tmp) / "data", videos=args.videos)
        else:
            corpus = make_pretrain_corpus(Path(tmp) / "data", videos=args.videos, signal=args.signal)
        overrides = {"preset": "tiny", "steps": args.steps, "batch_size": 32, "lr": 2e-3,
                     "warmup": min(500, args.steps // 10), "eval_every": max(1, args.steps // 12),
                     "eval_sentences": 10_000, "save_every": 0, "log_every": max(1, args.steps // 12), "device": "cpu"}
        cfg = cfgmod.load(PretrainConfig, overrides=overrides, assignments=args.set)
        print(f"synthetic corpus ({args.corpus}): {args.videos} videos; "
              f"config: {json.dumps({k: v for k, v in cfgmod.to_dict(cfg).items() if v is not None})}")
        began = time.perf_counter()
        summary = pretrain(corpus, Path(tmp) / "run", cfg, vocab_dir=vocab_dir).details
        seconds = time.perf_counter() - began
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    names = ["text_mlm_acc", "video_mlm_acc", "video_text_text_acc", "video_text_video_acc", "align_acc"]
    print(f"{'step':>6} " + " ".join(f"{n:>20}" for n in names))
    for row in rows:
        if row["split"] == "val":
            print(f"{row['step']:>6} " + " ".join(f"{row.get(n, float('nan')):>20.3f}" for n in names))
    chance = summary["chance"]
    print(f"chance: text {chance['text_acc']:.3f}, visual word {chance['video_acc']:.3f}, alignment 0.5")
    print(f"{args.steps} steps in {seconds:.0f} s on {torch.get_num_threads()} CPU thread(s)")


if __name__ == "__main__":
    main()
