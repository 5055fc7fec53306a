"""``videobert retrieve MODEL "query" [--index INDEX | --corpus CORPUS]``: the segments that best match a sentence.

Search video segments with a sentence: those of an index (videobert index), of a corpus's split,
or by default the model folder's own test segments. Two stages: the model's dual encoder (videobert
distil) finds the K nearest segments (--two-stage K; by default the K chosen on the val split), the
[CLS] alignment head re-ranks them; --exhaustive scores every segment with the alignment head
instead. The best are printed as rank, video_id, start, end, alignment probability, first-stage
similarity and sentence.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, command, new_parser, note, resolve_config
from videobert.media import save_jpeg
from videobert.retrieval.display import hits_sheet
from videobert.search import RetrieveConfig, format_hits, search_collection


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
    found = search_collection(args.run, args.query, cfg, index=args.index, corpus=args.corpus)
    note("%d segments of %s searched for %r", found.searched, found.where, args.query)
    print("\n".join(format_hits(found.hits)))
    if args.sheet is not None:
        save_jpeg(hits_sheet(found.hits, found.video_path, cfg.sheet_size), args.sheet)
        print(f"contact sheet: {args.sheet}")


main = command("videobert retrieve", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
