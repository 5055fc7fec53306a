"""Benchmark of the visual vocabulary: building the tree and tokenizing clips.

    python bench/vocab.py                                          # what a 2-core CPU box can do
    python bench/vocab.py --points 1000000 --tokenize-clips 10000000   # the targets, on a GPU machine

Features are synthetic: ``--blobs`` Gaussian clusters in ``--dim`` dimensions, stored as float16 like
extract's output. Figures printed, with the baselines measured in the same run:

* build: normalisation, then hierarchical k-means (faiss on GPU when it has one and --device allows).
  Baseline: flat faiss k-means with as many centroids as the tree has words, on ``--flat-clips``
  of the same clips, for ``--flat-niter`` iterations (its seconds per iteration is what matters;
  the MSEs are printed beside the hierarchy's, on the same clips).
* tokenize: ``Codebook.tokenize`` over ``--tokenize-clips`` clips (the build clips repeated), from
  float16 host memory to int32 words — normalisation and tree descent, on CPU and on CUDA when
  present. Baseline: exhaustive nearest word (faiss IndexFlatL2 over the V word vectors), and how
  often the tree picks that same word.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videobert.runtime import cpu_name  # noqa: E402
from videobert.vocab import Codebook, faiss_gpu_wanted, fit_normalisation, hierarchical_kmeans, quantisation_mse  # noqa: E402


def machine() -> str:
    cpu = cpu_name()
    import faiss

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores (torch threads {torch.get_num_threads()}, faiss threads {faiss.omp_get_max_threads()}); "
        f"{gpu}; faiss {faiss.__version__} ({faiss.get_num_gpus()} GPU), torch {torch.__version__}, numpy {np.__version__}"
    )


def calibration() -> str:
    """Host memory copy bandwidth and float32 GEMM rate: what CPU tokenize and the build lean on."""
    block = torch.empty(64 * 2**20 // 4)  # 64 MiB, beyond the caches
    a, b = torch.randn(4096, 1024), torch.randn(1024, 1024)
    block.clone(), a @ b  # warm-up
    _, t_copy = timed(lambda: [block.clone() for _ in range(8)])
    _, t_gemm = timed(lambda: [a @ b for _ in range(4)])
    return f"host copy {8 * 2 * block.numel() * 4 / t_copy / 1e9:.1f} GB/s, float32 GEMM {4 * 2 * 4096 * 1024 * 1024 / t_gemm / 1e9:.0f} GFLOP/s"


def clustered(points: int, dim: int, blobs: int, seed: int) -> np.ndarray:
    """float16 [points, dim]: ``blobs`` Gaussian clusters (unit centres, noise 0.5), in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((blobs, dim), dtype=np.float32)
    out = np.empty((points, dim), np.float16)
    for lo in range(0, points, 100_000):
        hi = min(points, lo + 100_000)
        noise = rng.standard_normal((hi - lo, dim), dtype=np.float32)
        out[lo:hi] = centres[rng.integers(blobs, size=hi - lo)] + 0.5 * noise
    return out


def timed(fn, *args, **kwargs):
    began = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=200_000, help="clips the vocabulary is built from")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--blobs", type=int, default=65536, help="planted clusters in the synthetic features (many: a near-continuous distribution)")
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--min-points-per-centroid", type=int, default=39)
    parser.add_argument("--max-points-per-centroid", type=int, default=256)
    parser.add_argument("--tokenize-clips", type=int, default=2_000_000)
    parser.add_argument("--batch-clips", type=int, default=262_144, help="clips per tokenize batch")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--cpu-tokenize-clips", type=int, default=None,
                        help="clips for the CPU tokenize figure (default: all of --tokenize-clips)")
    parser.add_argument("--flat-clips", type=int, default=100_000, help="clips of the flat k-means baseline (0: skip it)")
    parser.add_argument("--flat-niter", type=int, default=2, help="iterations of the flat k-means baseline")
    parser.add_argument("--baseline-clips", type=int, default=100_000, help="clips of the exhaustive-search tokenize baseline")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import faiss

    print(f"machine: {machine()}")
    print(f"calibration: {calibration()}; load average {os.getloadavg()[0]:.1f}")
    print(f"settings: {args.points} x {args.dim} clips ({args.blobs} planted clusters), k={args.k}, depth={args.depth}, "
          f"niter={args.niter}, min/max points per centroid {args.min_points_per_centroid}/{args.max_points_per_centroid}")
    features, seconds = timed(clustered, args.points, args.dim, args.blobs, args.seed)
    print(f"  (generated the features in {seconds:.1f} s)")

    # ---- build
    gpu = faiss_gpu_wanted(args.device)
    sample = features.astype(np.float32)
    norm, t_fit = timed(fit_normalisation, sample, "standardise")
    z, t_apply = timed(lambda: norm.apply(torch.from_numpy(sample)).numpy())
    del sample
    (tree, leaves), t_tree = timed(
        hierarchical_kmeans, z, args.k, args.depth, args.niter, args.seed, "kmeans++",
        args.min_points_per_centroid, args.max_points_per_centroid, gpu,
    )
    levels = tree.node_level[tree.word_node]
    per_level = {int(level): int((levels == level).sum()) for level in np.unique(levels)}
    build = t_fit + t_apply + t_tree
    print(f"\nbuild ({'faiss GPU for large nodes' if gpu else 'faiss CPU'}): {build:.1f} s  = normalisation fit {t_fit:.1f} s + apply {t_apply:.1f} s "
          f"+ tree {t_tree:.1f} s; {tree.size} words (per level {per_level}), {len(tree.first_child)} nodes")
    words = tree.node_word[leaves]
    vectors = tree.centroids[tree.word_node]
    if args.flat_clips:
        rows = np.sort(np.random.default_rng(args.seed).choice(len(z), min(args.flat_clips, len(z)), replace=False))
        subset = np.ascontiguousarray(z[rows])
        kmeans = faiss.Kmeans(z.shape[1], tree.size, niter=args.flat_niter, seed=args.seed, gpu=gpu,
                              min_points_per_centroid=1, max_points_per_centroid=-(-len(subset) // tree.size))
        _, t_flat = timed(kmeans.train, subset)
        flat_mse = float(kmeans.index.search(subset, 1)[0].mean())
        print(f"  baseline flat k-means, {tree.size} centroids on {len(subset)} clips: {t_flat:.1f} s for {args.flat_niter} "
              f"iterations ({t_flat / args.flat_niter:.1f} s per iteration; {args.niter} would take ~{t_flat / args.flat_niter * args.niter:.0f} s)")
        print(f"  quantisation MSE on those clips: hierarchy {quantisation_mse(subset, words[rows], vectors):.1f}, "
              f"flat after {args.flat_niter} iterations {flat_mse:.1f}")

    # ---- tokenize
    clips = np.resize(features, (args.tokenize_clips, args.dim))
    del features
    runs = [("cpu", "grouped")]
    if args.device != "cpu" and torch.cuda.is_available():
        runs += [("cuda", "gathered"), ("cuda", "grouped")]
    print(f"\ntokenize {args.tokenize_clips} clips (float16 in host memory -> int32 words, batches of {args.batch_clips}):")
    results = {}
    for device, descent in runs:
        codebook = Codebook(tree, norm, depth=args.depth, seed=args.seed, device=device, batch_clips=args.batch_clips, descent=descent)
        count = args.tokenize_clips if device == "cuda" or args.cpu_tokenize_clips is None else args.cpu_tokenize_clips
        codebook.tokenize(clips[: min(count, args.batch_clips)])  # warm-up: kernels, tensors on the device
        if device == "cuda":
            torch.cuda.synchronize()
        results[device, descent], seconds = timed(codebook.tokenize, clips[:count])
        print(f"  {device} ({descent} descent): {count / seconds / 1e6:.2f} M clips/s ({seconds:.1f} s for {count} clips)")
    cpu_words = results["cpu", "grouped"]
    for (device, descent), words in results.items():
        if device == "cuda":
            same = np.mean(words[: len(cpu_words)] == cpu_words)
            print(f"  cuda ({descent}) words equal the CPU words for {same:.4%} of clips")

    count = min(args.baseline_clips, args.tokenize_clips)
    query = Codebook(tree, norm, depth=args.depth, seed=args.seed, device="cpu").normalise(clips[:count])
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    if gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    (_, nearest), seconds = timed(index.search, query, 1)
    tree_words = cpu_words[:count]
    print(f"  baseline exhaustive nearest word (faiss IndexFlatL2 over {tree.size} words, {'GPU' if gpu else 'CPU'}): "
          f"{count / seconds / 1e6:.3f} M clips/s on {count} clips; the tree picks that word for {np.mean(nearest[:, 0] == tree_words):.1%}")


if __name__ == "__main__":
    main()
