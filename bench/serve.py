"""``videobert serve`` under load: queries from concurrent clients on loopback.

    python bench/serve.py --model runs/demo/model                         # 200 queries, 8 clients
    python bench/serve.py --model runs/demo/model --index runs/mine/index --queries 400 --clients 16

Starts the server as ``videobert serve`` runs it (a separate process, on a free loopback port),
waits until it answers, then sends ``--queries`` searches from ``--clients`` threads at once (the
queries cycle through the test sentences of the model's own index, or ``--query``). Printed: how
many were answered (200) and how many were refused as busy (503, by design once ``--concurrent``
run and ``--queue`` wait; anything else is an error and is counted as one), the latency of the
answered ones (p50, p95, max) and the server's throughput; beside it, the wall time of one
``videobert retrieve`` command for the same query (which loads the model every time).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from videobert.runtime import cpu_name  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model folder (videobert pretrain + distil)")
    parser.add_argument("--index", type=Path, help="index folder (default: the model's test_index)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--concurrent", type=int, default=1)
    parser.add_argument("--queue", type=int, default=16)
    parser.add_argument("--query", action="append", help="a query (repeatable; default: the index's sentences)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "pipelines.cli", "serve", str(args.model), "--port", str(port), "--device", "cpu",
               "--concurrent", str(args.concurrent), "--queue", str(args.queue), "-q",
               *(["--index", str(args.index)] if args.index else [])]
    server = subprocess.Popen(command, env=env, cwd=REPO)
    try:
        for _ in range(600):
            try:
                indexes = httpx.get(f"{url}/api/indexes", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not answer within 120 s")
        queries = args.query
        if not queries:
            from videobert.index import open_index
            from videobert.search import model_index

            opened = open_index(args.index) if args.index else model_index(args.model)
            queries = [s["text"] for s in opened.segments() if s["text"]][:50] or ["now the red circle moves left"]
        print(f"machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores; server: {args.concurrent} search at a "
              f"time, {args.queue} waiting; index {indexes[0]['name']} ({indexes[0]['segments']} segments); "
              f"{args.queries} queries from {args.clients} clients")
        httpx.get(f"{url}/api/search", params={"q": queries[0]}, timeout=120)  # warm-up

        def ask(i: int):
            began = time.perf_counter()
            try:
                answer = httpx.get(f"{url}/api/search", params={"q": queries[i % len(queries)], "top_k": 5}, timeout=300)
                return answer.status_code, time.perf_counter() - began
            except httpx.HTTPError:
                return -1, time.perf_counter() - began

        began = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(ask, range(args.queries)))
        seconds = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=30)
    codes = [code for code, _ in results]
    answered = np.array([t for code, t in results if code == 200]) * 1000
    errors = sum(code not in (200, 503) for code in codes)
    print(f"answered {codes.count(200)}, busy (503) {codes.count(503)}, errors {errors} in {seconds:.1f} s "
          f"({codes.count(200) / seconds:.1f} answers/s)")
    if answered.size:
        print(f"latency of the answered, ms: p50 {np.percentile(answered, 50):.0f}, p95 {np.percentile(answered, 95):.0f}, "
              f"max {answered.max():.0f} (a query waits for those before it)")
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipelines.cli", "retrieve", str(args.model), queries[0], "--device", "cpu", "-q",
                    *(["--index", str(args.index)] if args.index else [])], env=env, cwd=REPO, check=True,
                   capture_output=True)
    print(f"beside: one videobert retrieve command, {time.perf_counter() - began:.1f} s (it loads the model each time)")


if __name__ == "__main__":
    main()
