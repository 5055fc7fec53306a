"""``videobert caption train|evaluate|generate|suite``: captioning from segment features (paper §4.3).

train: a transformer encoder-decoder (after Zhou et al. 2018) on EMB's train split (videobert embed),
reading its S3D part, its VideoBERT part or both (--features); --resume continues bit for bit.
evaluate: beam search on a split, scored with the COCO caption toolkit (BLEU-3/4, METEOR where Java
is installed, ROUGE-L, CIDEr) beside two baselines that copy train captions — the nearest neighbour's, and
the consensus of the K nearest (the one of their captions most like the others) — into CAP/eval-<split> (or -o OUT).
generate: print the captions of a split's segments (-o FILE: write them as JSON Lines).
suite: one captioner per feature choice in CAP/<features>/ (what videobert run and the demo call).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, command, new_parser, resolve_config, say
from videobert.caption import stage
from videobert.store import StageCall, StageSummary


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert caption", __doc__)
    actions = parser.add_subparsers(dest="action", metavar="{train,evaluate,generate,suite}", required=True)
    train = actions.add_parser("train", help="train a captioner on EMB's train split")
    train.add_argument("embeddings", type=Path, metavar="EMB", help="embeddings folder (videobert embed)")
    train.add_argument("-o", "--out", type=Path, required=True, metavar="CAP", help="captioner folder")
    train.add_argument("--resume", action="store_true", help="continue from the folder's latest checkpoint")
    add_config_arguments(train, stage.CaptionConfig)
    for name, help_text in (("evaluate", "caption a split and score it beside the nearest-neighbour and consensus baselines"),
                            ("generate", "caption a split's segments")):
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("captioner", type=Path, metavar="CAP", help="captioner folder (videobert caption train)")
        sub.add_argument("--embeddings", type=Path, metavar="EMB", help="embeddings folder (default: the captioner's)")
        sub.add_argument("--split", default="test", choices=["train", "val", "test"], help="split (default: test)")
        sub.add_argument("--beam", type=int, metavar="K", help="beam width (default: the captioner's config)")
        sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
        out_help = "output folder (default: CAP/eval-<split>)" if name == "evaluate" else "write the captions as JSON Lines"
        sub.add_argument("-o", "--out", type=Path, metavar="OUT" if name == "evaluate" else "FILE", help=out_help)
        if name == "evaluate":
            sub.add_argument("--consensus-k", type=int, default=stage.CONSENSUS_K, metavar="K",
                             help="train segments the consensus baseline chooses among: of their captions, the one most "
                                  f"like the others (default {stage.CONSENSUS_K}, chosen on the demo's val split; 1: the "
                                  "nearest neighbour)")
        if name == "generate":
            sub.add_argument("--limit", type=int, default=0, metavar="N", help="only the first N segments (0: all)")
    suite = actions.add_parser("suite", help="train and evaluate one captioner per feature choice")
    suite.add_argument("embeddings", type=Path, metavar="EMB", help="embeddings folder (videobert embed)")
    suite.add_argument("-o", "--out", type=Path, required=True, metavar="CAP", help="folder of the captioners")
    add_config_arguments(suite, stage.CaptionSuiteConfig)
    for sub in actions.choices.values():
        for flags in (("--debug",), ("-v", "--verbose"), ("-q", "--quiet")):  # also after the action
            sub.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def run(args: argparse.Namespace) -> None:
    if args.action == "train":
        say(stage.train(args.embeddings, args.out, resolve_config(stage.CaptionConfig, args), resume=args.resume).message)
    elif args.action == "suite":
        report(stage.run_suite(args.embeddings, args.out, resolve_config(stage.CaptionSuiteConfig, args)))
    elif args.action == "evaluate":
        cfg = stage.decoding_config(args.captioner, args.device, args.beam)
        say(stage.evaluate(args.captioner, args.embeddings, args.out, args.split, cfg, args.consensus_k).message)
    else:
        cfg = stage.decoding_config(args.captioner, args.device, args.beam)
        captions = stage.generate_captions(args.captioner, args.embeddings, args.split, cfg, args.limit, args.out)
        say(f"{len(captions)} captions written to {args.out}" if args.out is not None
              else "\n".join(json.dumps(row, ensure_ascii=False) for row in captions))


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's caption stage."""
    return ["suite", str(call.inputs["emb_dir"]), "-o", str(call.out_dir), "--config", str(call.config_file)]


def report(summary: StageSummary) -> None:
    say(summary.message)  # videobert run's caption stage: every captioner's figures beside its baseline


main = command("videobert caption", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
