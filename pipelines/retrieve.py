"""``videobert retrieve MODEL "query" [--index INDEX | --corpus CORPUS]``: the segments that best match a sentence.

Search video segments with a sentence: those of an index (videobert index), of a corpus's split,
or by default the model folder's own test segments. Every segment is scored with the [CLS]
alignment head (or only the first stage's best K with --two-stage K), and the best are printed
as rank, video_id, start, end, alignment probability.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, command, new_parser, note, resolve_config
from videobert.errors import StageError
from videobert.media import save_jpeg
from videobert.retrieval.display import hits_sheet, video_paths
from videobert.retrieval.gallery import RetrieveConfig, check_same_vocabulary, gallery_segments, retrieve
from videobert.pipeline import VideoBERTPipeline
from videobert.retrieval.inference import load_model


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert retrieve", __doc__)
    parser.add_argument("run", type=Path, metavar="MODEL", help="model folder (videobert pretrain)")
    parser.add_argument("query", metavar="QUERY", help="the sentence to search for")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--index", type=Path, metavar="INDEX", help="index folder (videobert index)")
    where.add_argument("--corpus", type=Path, metavar="CORPUS", help="corpus folder (videobert corpus): its --split")
    parser.add_argument("--sheet", type=Path, metavar="JPG", help="write a contact sheet of the hits' middle frames")
    add_config_arguments(parser, RetrieveConfig)
    return parser


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(RetrieveConfig, args)
    if args.corpus is not None:
        loaded = load_model(args.run, cfg.device, cfg.precision, cfg.batch_tokens)
        check_same_vocabulary(loaded, args.corpus)
        segments = gallery_segments(args.corpus, cfg.split)
        where = f"the {cfg.split} split of {args.corpus}"
        paths = lambda: video_paths(args.corpus)  # noqa: E731 - read only when a sheet is asked for
    else:
        pipe = VideoBERTPipeline.from_pretrained(args.run, device=cfg.device, precision=cfg.precision,
                                                 batch_tokens=cfg.batch_tokens)
        index = pipe.open_index(args.index)
        loaded, segments, where = pipe.loaded, index.segments(), str(index.folder)
        paths = index.video_paths
    if not segments:
        raise StageError(f"{where}: no segment with visual words")
    hits = retrieve(loaded, args.query, segments, cfg.top_k, cfg.two_stage)
    note("%d segments of %s searched for %r", len(segments), where, args.query)
    print(f"{'rank':>4}  {'video_id':<24}{'start':>8}{'end':>8}{'score':>8}  sentence")
    for hit in hits:
        print(f"{hit.rank:>4}  {hit.video_id:<24}{hit.start:>8.2f}{hit.end:>8.2f}{hit.score:>8.4f}  {hit.text}")
    if args.sheet is not None:
        save_jpeg(hits_sheet(hits, paths(), cfg.sheet_size), args.sheet)
        print(f"contact sheet: {args.sheet}")


main = command("videobert retrieve", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
