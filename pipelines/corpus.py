"""``videobert corpus MANIFEST --tokens TOKENS [--transcripts DIR] -o CORPUS``: the aligned training corpus."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from pipelines.common import add_config_arguments, new_parser, resolve_config, run_main
from videobert import config as cfgmod
from videobert.corpus import CorpusConfig, build_corpus
from videobert.logs import progress
from videobert.manifest import read_manifest
from videobert.store import FailureLog, prepare_output_dir

log = logging.getLogger("pipelines.corpus")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "videobert corpus",
        "Pair each transcript sentence with the visual words of the clips its time span overlaps, and\n"
        "write train/val/test examples (splits from the manifest), the WordPiece tokenizer, the joint\n"
        "text+video vocabulary and summary.json into CORPUS. Videos without speech give video-only\n"
        "examples of 16 consecutive visual words.",
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="manifest.jsonl or a folder of videos")
    parser.add_argument("--tokens", type=Path, required=True, metavar="TOKENS", help="output folder of 'videobert tokenize'")
    parser.add_argument(
        "--transcripts", type=Path, default=None, metavar="DIR",
        help="transcripts (<video_id>.vtt, e.g. from 'videobert asr') for videos the manifest gives none",
    )
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="CORPUS", help="output folder")
    add_config_arguments(parser, CorpusConfig)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(CorpusConfig, args)
    entries = read_manifest(args.manifest)
    out = prepare_output_dir(args.out)
    cfgmod.save(cfg, out / "config.yaml")
    began = time.perf_counter()
    with FailureLog(out / "failures.jsonl") as failures:
        summary = build_corpus(
            entries, args.tokens, out, cfg, failures, transcripts_dir=args.transcripts,
            progress=lambda it, total: progress(it, total=total, desc="corpus", unit="video"),
            manifest=args.manifest,
        )
    splits = summary["splits"]
    log.info(
        "corpus: %d examples (train %d, val %d, test %d) from %d videos (%d with speech, %d video-only, %d failed); "
        "%.1f words and %.1f clips per sentence; %d sentences outside the clips dropped; "
        "joint vocabulary %d = %d text + [>] + %d visual; in %.1f s -> %s",
        summary["examples"], splits["train"]["examples"], splits["val"]["examples"], splits["test"]["examples"],
        summary["videos"]["total"], summary["videos"]["with_speech"], summary["videos"]["video_only"],
        summary["videos"]["failed"], summary["words_per_sentence"]["mean"], summary["clips_per_sentence"]["mean"],
        summary["dropped_sentences"]["outside_clips"], summary["joint_vocab_size"],
        summary["tokenizer"]["text_vocab_size"], summary["visual_vocab_size"], time.perf_counter() - began, out,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("videobert corpus", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
