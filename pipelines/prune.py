"""``videobert prune RUN [--dry-run]``: delete the earlier outputs a run folder keeps.

When a stage of ``videobert run`` reruns because its config or inputs changed (or --force), the
runner moves the stage's previous outputs to RUN/.previous/<stage>-<time>/ rather than deleting
them. This command lists those folders with their sizes and deletes them (--dry-run: lists only):
only the <stage>-<time> folders that pipeline.json records, never through a link; anything else
in RUN/.previous is left and named. It refuses a folder without a readable pipeline.json, a
.previous that is a link, and a folder that a run is writing (it holds the folder's lock).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import command, new_parser, note, say
from videobert.runner import prune


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert prune", __doc__)
    parser.add_argument("run_dir", type=Path, metavar="RUN", help="run folder written by 'videobert run' or 'videobert demo'")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    return parser


def run(args: argparse.Namespace) -> None:
    folders = prune(args.run_dir, dry_run=args.dry_run)
    for path, size in folders:
        say(f"{size / 2**20:10.1f} MiB  {path}")
    total = sum(size for _, size in folders) / 2**20
    verb = "would delete" if args.dry_run else "deleted"
    note("%s %d earlier output folder(s), %.1f MiB, of %s", verb, len(folders), total, args.run_dir)


main = command("videobert prune", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
