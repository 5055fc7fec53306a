"""``videobert caption train|evaluate|generate``: captioning from segment features (paper §4.3).

  videobert caption train EMB -o CAP [--features both|s3d|videobert] [--resume]
  videobert caption evaluate CAP [--embeddings EMB] [--split test] [-o OUT]
  videobert caption generate CAP [--embeddings EMB] [--split test] [--limit N] [-o captions.jsonl]
  videobert caption suite EMB -o CAP [--config YAML]     (what videobert run and the demo call)

train: a transformer encoder-decoder (after Zhou et al. 2018) over the train split of an EMB folder
(videobert embed), reading its S3D part, its VideoBERT part or both, writing the VideoBERT run's
WordPieces; checkpoints every --save-every steps, --resume continues bit for bit.
evaluate: beam search on a split, scored with the COCO caption toolkit (pycocoevalcap: BLEU-3,
BLEU-4, METEOR, ROUGE-L, CIDEr; METEOR and the PTB tokenizer run on Java — without Java METEOR is
reported as not computed and captions are tokenized in Python), beside the nearest-neighbour
baseline (the caption of the most similar train segment). Writes OUT/metrics.json and
OUT/captions.jsonl (default OUT: CAP/eval-<split>).
generate: print (or write as JSON Lines) the captions of a split's segments.
suite: one captioner per feature choice (compare: [s3d, videobert, both]) in CAP/<features>/, each
trained and evaluated, all scored in one toolkit run; the figures in CAP/metrics.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, command, new_parser, resolve_config
from videobert.caption import stage
from videobert.embed.stage import load_embeddings, part_slices
from videobert.errors import ConfigError
from videobert.runtime import resolve_device
from videobert.store import StageCall, StageSummary, atomic_write_text, jsonl_text


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert caption", __doc__)
    actions = parser.add_subparsers(dest="action", metavar="{train,evaluate,generate,suite}", required=True)
    train = actions.add_parser("train", help="train a captioner on EMB's train split",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("embeddings", type=Path, metavar="EMB", help="embeddings folder (videobert embed)")
    train.add_argument("-o", "--out", type=Path, required=True, metavar="CAP", help="captioner folder")
    train.add_argument("--resume", action="store_true", help="continue from the folder's latest checkpoint")
    add_config_arguments(train, stage.CaptionConfig)
    for name, help_text in (("evaluate", "caption a split and score it beside the nearest-neighbour baseline"),
                            ("generate", "caption a split's segments")):
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("captioner", type=Path, metavar="CAP", help="captioner folder (videobert caption train)")
        sub.add_argument("--embeddings", type=Path, metavar="EMB",
                         help="embeddings folder (default: the one the captioner was trained on)")
        sub.add_argument("--split", default="test", choices=["train", "val", "test"], help="split (default: test)")
        sub.add_argument("--beam", type=int, metavar="K", help="beam width (default: the captioner's config)")
        sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
        if name == "evaluate":
            sub.add_argument("-o", "--out", type=Path, metavar="OUT", help="output folder (default: CAP/eval-<split>)")
        else:
            sub.add_argument("--limit", type=int, default=0, metavar="N", help="only the first N segments (0: all)")
            sub.add_argument("-o", "--out", type=Path, metavar="FILE", help="write the captions as JSON Lines")
    suite = actions.add_parser("suite", help="train and evaluate one captioner per feature choice")
    suite.add_argument("embeddings", type=Path, metavar="EMB", help="embeddings folder (videobert embed)")
    suite.add_argument("-o", "--out", type=Path, required=True, metavar="CAP", help="folder of the captioners")
    add_config_arguments(suite, stage.CaptionSuiteConfig)
    for sub in actions.choices.values():
        for flags in (("--debug",), ("-v", "--verbose"), ("-q", "--quiet")):  # also after the action
            sub.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _decoding(args: argparse.Namespace) -> stage.CaptionConfig:
    from videobert import config as cfgmod

    stage.check_captioner_dir(args.captioner)
    cfg = cfgmod.load(stage.CaptionConfig, args.captioner / "config.yaml")
    cfg.device = args.device
    if args.beam is not None:
        if args.beam < 1:
            raise ConfigError("--beam: need >= 1")
        cfg.beam = args.beam
    return cfg


def run(args: argparse.Namespace) -> None:
    if args.action == "train":
        cfg = resolve_config(stage.CaptionConfig, args)
        print(stage.train(args.embeddings, args.out, cfg, resume=args.resume).message)
    elif args.action == "suite":
        report(stage.run_suite(args.embeddings, args.out, resolve_config(stage.CaptionSuiteConfig, args)))
    elif args.action == "evaluate":
        print(stage.evaluate(args.captioner, args.embeddings, args.out, args.split, _decoding(args)).message)
    else:
        cfg = _decoding(args)
        model, tokenizer, info = stage.load_captioner(args.captioner, resolve_device(cfg.device))
        emb = args.embeddings or Path(info["embeddings"])
        matrix, rows, meta = load_embeddings(emb, args.split)
        count = min(args.limit, len(rows)) if args.limit > 0 else len(rows)
        features = matrix[:count, part_slices(meta, info["features"])].astype("float32")
        captions = stage.generate(model, tokenizer, features, cfg.beam, cfg.length_penalty)
        out = [{"video_id": r["video_id"], "start": r["start"], "end": r["end"], "caption": c, "sentence": r["sentence"]}
               for r, c in zip(rows, captions)]
        if args.out is not None:
            atomic_write_text(args.out, jsonl_text(out))
            print(f"{len(out)} captions written to {args.out}")
        else:
            for row in out:
                print(json.dumps(row, ensure_ascii=False))


def argv(call: StageCall) -> list[str]:
    """The command line of a pipeline's caption stage."""
    return ["suite", str(call.inputs["emb_dir"]), "-o", str(call.out_dir), "--config", str(call.config_file)]


def report(summary: StageSummary) -> None:
    """What a pipeline's caption stage prints: the figures of every captioner beside its baseline."""
    print(summary.message)


main = command("videobert caption", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
