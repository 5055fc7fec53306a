"""``videobert serve MODEL [--index INDEX ...] [--host 127.0.0.1] [--port 8000]``: search in a browser.

Open the model folder and its indexes once (by default its own test_index), then serve a page with
a search box: each hit is a card with a filmstrip of its segment, the video id, the time span, its
sentence, both scores (the cross-encoder's alignment probability, the first stage's similarity) and
the query's visual words it holds; clicking a card plays its seconds. Hits that overlap or touch in
one video are one card. Beside the page, a JSON API (README: "Search in a browser"). Binds to
loopback unless --host says otherwise; serves only the video files the indexes record.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from pipelines.common import command, new_parser, note


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert serve", __doc__)
    parser.add_argument("model", type=Path, metavar="MODEL", help="model folder (videobert pretrain + distil)")
    parser.add_argument("--index", type=Path, action="append", metavar="INDEX",
                        help="index folder to search (videobert index); repeat for several (default: MODEL/test_index)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--concurrent", type=int, default=1, help="searches run at once (default: 1)")
    parser.add_argument("--queue", type=int, default=16, help="searches that may wait; one more is refused with 503 (default: 16)")
    return parser


def run(args: argparse.Namespace) -> None:
    import uvicorn

    from videobert.serve.app import SearchService, create_app

    if args.concurrent < 1 or args.queue < 0 or not 0 < args.port < 65536:
        raise SystemExit("videobert serve: error: --concurrent >= 1, --queue >= 0 and a port 1 … 65535")
    service = SearchService(args.model, args.index, args.device)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        note("listening on %s: reachable from other machines; anyone who reaches it can search and play the videos",
             args.host)
    note("serving %s on http://%s:%d/ (%s)", args.model, args.host, args.port,
         ", ".join(f"{d['name']}: {d['segments']} segments" for d in service.describe()))
    uvicorn.run(create_app(service, args.concurrent, args.queue), host=args.host, port=args.port, log_level="warning")


main = command("videobert serve", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
