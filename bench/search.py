"""Search at scale: a query's time against collections of 10 k, 100 k and 1 M segments.

    python bench/search.py --model runs/demo/model --corpus runs/demo/corpus --out runs/search-bench
    python bench/search.py ... --sizes 10000,100000 --queries 30          # quicker

The collections are fabricated from the run's real visual-word statistics: videos whose visual
words follow the bigram of the corpus's train videos (each next word drawn from the words that
followed the previous one there), as long as the corpus's videos (lengths drawn from theirs), cut
into segments of 16 clips as ``videobert index`` cuts a video without listed segments, and written
with the model's dual encoder through the index's own code (parts of 256 videos, as ``videobert
index`` writes them; an IVF beyond 250 000 segments, as it chooses). The smallest collection is
built first, then grown to each larger size by adding videos, as a user's index grows. The queries
are the corpus's test sentences.

Per collection it prints the time to build or grow it (vectors and writing), its kind (flat or
IVF) and bytes on disk; then, per query, in a fresh process that opens the index and asks the
queries — so that memory is a searcher's, not the build's — the text tower's, the first stage's
(faiss) and the re-ranking's (K cross-encoder pairs) milliseconds, end to end with the model loaded
(p50 and p95), and the process's own peak RSS (VmHWM). Beside them: the exhaustive cross-encoder (every
segment scored) measured at the smallest size and extrapolated linearly beyond it, labelled so;
at the smallest size, how many of the exhaustive top 5 the two-stage top 5 holds; and the time to
add 1 000 more videos to the smallest and to the largest collection.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videobert.corpus.reader import CorpusSplit, corpus_visual_words  # noqa: E402
from videobert.dual import load_dual  # noqa: E402
from videobert.index.folder import (  # noqa: E402
    FLAT_LIMIT, META_FILE, open_index, part_numbers, read_template, to_ivf, write_part,
)
from videobert.index.stage import IndexConfig, index_meta, make_part  # noqa: E402
from videobert.inference import load_model  # noqa: E402
from videobert.runtime import cpu_name  # noqa: E402
from videobert.search import Searcher  # noqa: E402

WINDOW, VIDEOS_PER_PART = 16, 256


def bigram_videos(corpus: Path, seed: int):
    """A generator of fabricated videos' visual words (module docstring), and the mean clips a video."""
    train = CorpusSplit(corpus, "train")
    words, _ = corpus_visual_words(corpus, train.video_names())
    videos = [np.asarray(w, np.int64) for w in words.values() if len(w) > 1]
    lengths = np.array([len(w) for w in videos])
    size = int(max(int(w.max()) for w in videos)) + 1
    followers: list[list[int]] = [[] for _ in range(size)]
    for w in videos:
        for a, b in zip(w[:-1], w[1:]):
            followers[int(a)].append(int(b))
    starts = np.array([int(w[0]) for w in videos])
    table = [np.array(f if f else [int(starts[0])], np.int64) for f in followers]
    rng = np.random.default_rng(seed)

    def video() -> np.ndarray:
        n = int(rng.choice(lengths))
        out = np.empty(n, np.int64)
        out[0] = rng.choice(starts)
        for i in range(1, n):
            choices = table[int(out[i - 1])]
            out[i] = choices[rng.integers(choices.size)]
        return out

    return video, float(lengths.mean())


def grow(index: Path, model, videos, first: int, count: int) -> float:
    """Add ``count`` fabricated videos (ids from ``first``) to ``index`` in parts; seconds taken."""
    loaded, dual = model
    began = time.perf_counter()
    numbers = part_numbers(index)
    number = (numbers[-1] + 1) if numbers else 0
    meta = json.loads((index / META_FILE).read_text())
    template = read_template(index) if meta["kind"] == "ivf" else None
    for start in range(first, first + count, VIDEOS_PER_PART):
        batch = [(f"video_{i:07d}", "", videos()) for i in range(start, min(first + count, start + VIDEOS_PER_PART))]
        write_part(index, number, make_part(dual, batch, 1.5, WINDOW, None), dual.identity, template)
        number += 1
    rows = sum(json.loads((p / "part.json").read_text())["rows"] for p in (index / "parts").iterdir()
               if p.name.startswith("part-"))
    if meta["kind"] == "flat" and rows > FLAT_LIMIT:
        to_ivf(index, nprobe=64)
    return time.perf_counter() - began


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def peak_rss() -> int:
    """Bytes: this process's own resident high-water mark (VmHWM). Not getrusage's ru_maxrss, which
    a process started by another carries over from its parent (Linux keeps the larger of the two
    across fork and exec), so that a searcher started by the building process would report the
    builder's memory."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(args) -> None:
    """The searcher's side (a fresh process): open the index, ask the queries, print JSON."""
    began = time.perf_counter()
    loaded = load_model(args.model, args.device)
    dual = load_dual(args.model, loaded)
    index = open_index(args.measure)
    opened = time.perf_counter() - began
    searcher = Searcher(loaded, dual, index)
    queries = json.loads(Path(args.queries_file).read_text())
    searcher.search(queries[0], top_k=5, k=args.k)  # warm-up
    timings, ends, agree = [], [], []
    for query in queries:
        start = time.perf_counter()
        hits = searcher.search(query, top_k=5, k=args.k)
        ends.append(time.perf_counter() - start)
        timings.append(dict(searcher.timings))
        if args.exhaustive:
            best = searcher.search(query, top_k=5, exhaustive=True)
            agree.append(len({h.row for h in hits} & {h.row for h in best}) / len(best))
    exhaustive = []
    for query in queries[: args.exhaustive_queries] if args.exhaustive else []:
        start = time.perf_counter()
        searcher.search(query, top_k=5, exhaustive=True)
        exhaustive.append(time.perf_counter() - start)
    out = {"open_seconds": opened, "rows": index.live_rows, "kind": index.meta["kind"],
           "end_to_end": ends, "parts": timings, "exhaustive": exhaustive, "agree": agree,
           "peak_rss": peak_rss()}
    print(json.dumps(out))


def ms(values) -> str:
    values = np.asarray(values) * 1000
    return f"{np.percentile(values, 50):7.1f} /{np.percentile(values, 95):7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model folder with a dual encoder (videobert distil)")
    parser.add_argument("--corpus", type=Path, help="the corpus it was trained on (statistics and queries)")
    parser.add_argument("--out", type=Path, help="where the collections are built (default: a temporary folder)")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="segments per collection, ascending")
    parser.add_argument("--queries", type=int, default=50, help="queries timed per collection")
    parser.add_argument("--k", type=int, default=100, help="first-stage K of the timed queries")
    parser.add_argument("--exhaustive-queries", type=int, default=5, help="queries scored exhaustively at the smallest size")
    parser.add_argument("--add-videos", type=int, default=1000, help="videos added to the smallest and largest collections")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the searcher process
    parser.add_argument("--queries-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--exhaustive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        measure(args)
        return
    if args.corpus is None:
        parser.error("--corpus is needed")
    import faiss
    import torch

    out = args.out or Path(os.environ.get("TMPDIR", "/tmp")) / "videobert-search-bench"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    loaded = load_model(args.model, args.device)
    dual = load_dual(args.model, loaded)
    if dual is None:
        raise SystemExit(f"{args.model}: no dual encoder (run videobert distil first)")
    video, mean_clips = bigram_videos(args.corpus, args.seed)
    test = CorpusSplit(args.corpus, "test")
    sentences = [test.text(int(r)) for r in test.rows_with(text=True)]
    queries = [sentences[i] for i in np.random.default_rng(args.seed).permutation(len(sentences))[: args.queries]]
    (out / "queries.json").write_text(json.dumps(queries))
    per_video = int(np.ceil(mean_clips / WINDOW))
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores; torch {torch.__version__}, faiss "
          f"{faiss.__version__}; model {args.model} (dual encoder: {dual.dim} numbers); {args.queries} queries, K "
          f"{args.k}; fabricated videos of {mean_clips:.0f} clips on average ({per_video} segments of {WINDOW} clips)")
    index = out / "index"
    index.mkdir()
    meta = index_meta(loaded, dual, 1.5, WINDOW, None, IndexConfig())
    (index / META_FILE).write_text(json.dumps(meta))
    model, made, small_copy = (loaded, dual), 0, None
    print(f"{'segments':>10}{'kind':>6}{'build s':>9}{'MB':>8}{'open s':>8}  {'ms p50 / p95: text tower':>24}"
          f"{'first stage':>17}{'re-rank':>17}{'end to end':>17}{'RSS MB':>8}")
    results = {}
    for size in sizes:
        wanted = max(1, size // per_video) - made
        seconds = grow(index, model, video, made, wanted)
        made += wanted
        if small_copy is None:
            small_copy = out / "small"
            shutil.copytree(index, small_copy)
        first = size == sizes[0]
        command = [sys.executable, __file__, "--model", str(args.model), "--measure", str(index), "--queries-file",
                   str(out / "queries.json"), "--k", str(args.k), "--device", args.device,
                   "--exhaustive-queries", str(args.exhaustive_queries), *(["--exhaustive"] if first else [])]
        found = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        results[size] = found
        parts = found["parts"]
        print(f"{found['rows']:>10}{found['kind']:>6}{seconds:>9.1f}{folder_bytes(index) / 1e6:>8.0f}"
              f"{found['open_seconds']:>8.1f}  {ms([p['text_tower'] for p in parts]):>24}"
              f"{ms([p['first_stage'] for p in parts]):>17}{ms([p['rerank'] for p in parts]):>17}"
              f"{ms(found['end_to_end']):>17}{found['peak_rss'] / 1e6:>8.0f}", flush=True)
    smallest = results[sizes[0]]
    per_segment = float(np.mean(smallest["exhaustive"])) / smallest["rows"]
    print(f"\nexhaustive cross-encoder (every segment scored), measured at {smallest['rows']} segments: "
          f"{np.mean(smallest['exhaustive']):.2f} s a query; extrapolated (linear, not measured): "
          + ", ".join(f"{per_segment * results[s]['rows']:.0f} s at {results[s]['rows']}" for s in sizes[1:]))
    print(f"two-stage top 5 holds {np.mean(smallest['agree']):.3f} of the exhaustive top 5 at {smallest['rows']} "
          f"segments (K {args.k}, {len(smallest['agree'])} queries)")
    for name, folder in (("smallest", small_copy), ("largest", index)):
        seconds = grow(folder, model, video, 10**6 + made, args.add_videos)
        print(f"adding {args.add_videos} videos ({args.add_videos * per_video} segments) to the {name} collection "
              f"({results[sizes[0] if name == 'smallest' else sizes[-1]]['rows']} segments): {seconds:.1f} s")
        made += args.add_videos


if __name__ == "__main__":
    main()
