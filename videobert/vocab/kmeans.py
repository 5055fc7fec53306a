"""Hierarchical k-means on faiss: growing the tree, descending it, measuring its quantisation error.

The paper (Sun et al. 2019) turns S3D clip features into discrete "visual words" with hierarchical
k-means, k = 12 and depth 4 (at most 12^4 = 20 736 words). faiss has no k-ary tree, so the tree is
grown level by level: every node with enough clips runs one ``faiss.Kmeans(k)`` on its clips and
hands each clip to its nearest child centroid; the leaves are the visual words, numbered 0 … V−1 in
breadth-first order.

Which nodes are split. A node with fewer than ``k * min_points_per_centroid`` clips (39 · k by
default, faiss's own minimum), or fewer than ``k``, is not split: it becomes a word at its level, so
words live at different depths and the descent handles that. faiss is called with the same
minimum, so it never prints its "please provide at least …" warning. A node with more than
``k * max_points_per_centroid`` clips fits its k-means on a seeded random subset of that size and
then assigns all its clips (faiss would subsample anyway, silently and with its own generator; here
it is reproducible and faiss receives a ``max_points_per_centroid`` it never exceeds).

Threads and GPU. Most nodes are small (at most ``k * max_points_per_centroid`` training clips:
3 072 by default); they are clustered concurrently, one CPU thread each, because a small k-means
spends more time starting OpenMP threads — or, on a GPU, copying data each iteration — than
computing. Larger nodes run one after the other on all CPU threads, or on the GPU when faiss has
one (``device``). Which does not change the result: every node draws its randomness from its own
seeded generator.

Initialisation. ``init="kmeans++"`` (default) seeds each node's k-means with greedy k-means++
computed here, so the result does not depend on the faiss version; ``"random"`` is
faiss's own initialisation.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from videobert.errors import ConfigError
from videobert.runtime import cpu_cores

log = logging.getLogger(__name__)

Init = Literal["kmeans++", "random"]


@dataclass
class VocabTree:
    """A hierarchical k-means tree. Nodes are breadth first (root 0; each level contiguous) and a
    split node's ``k`` children are contiguous from ``first_child``; the leaves are the words."""

    k: int
    centroids: np.ndarray  # float32 [N, D]
    first_child: np.ndarray  # int32 [N], -1 for a leaf
    node_level: np.ndarray  # int32 [N]
    node_points: np.ndarray  # int64 [N]

    def __post_init__(self) -> None:
        self.word_node = np.flatnonzero(self.first_child < 0).astype(np.int32)
        self.node_word = np.full(len(self.first_child), -1, np.int32)
        self.node_word[self.word_node] = np.arange(len(self.word_node), dtype=np.int32)

    @property
    def size(self) -> int:
        """Number of visual words (leaves)."""
        return len(self.word_node)

    @property
    def levels(self) -> int:
        """Deepest level that holds a node (0 when the root was not split)."""
        return int(self.node_level.max())


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [k, D] initial centroids chosen from ``x`` [n, D] by greedy k-means++ (each step
    draws 2 + ln k candidates proportionally to squared distance and keeps the best)."""
    n = len(x)
    trials = 2 + int(math.log(k))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    sq = (xt * xt).sum(dim=1)

    def sq_dist(rows: np.ndarray) -> np.ndarray:  # float64 [len(rows), n]
        rows_t = torch.from_numpy(rows)
        d = sq[rows_t, None] + sq[None, :] - 2.0 * (xt[rows_t] @ xt.T)
        return d.clamp_min_(0).double().numpy()

    chosen = [int(rng.integers(n))]
    closest = sq_dist(np.array(chosen))[0]
    for _ in range(1, k):
        potential = closest.sum()
        if potential <= 0:  # every point coincides with a chosen centroid
            chosen.append(int(rng.integers(n)))
            continue
        candidates = np.searchsorted(np.cumsum(closest), rng.random(trials) * potential)
        candidates = np.minimum(candidates, n - 1)
        options = np.minimum(closest[None, :], sq_dist(candidates))
        best = int(options.sum(axis=1).argmin())
        chosen.append(int(candidates[best]))
        closest = options[best]
    return x[np.array(chosen)].astype(np.float32)


def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor, sqnorms: torch.Tensor) -> torch.Tensor:
    """Index [m] of the nearest of ``centroids`` [k, D] (squared norms ``sqnorms`` [k]) for each row
    of ``x`` [m, D]: argmin of |c|² − 2 x·c, the squared distance less the constant |x|²."""
    return (sqnorms[None, :] - 2.0 * (x @ centroids.T)).argmin(dim=1)


def faiss_gpu_wanted(device: str) -> bool:
    """Whether faiss should cluster on GPU for ``device`` (auto, cpu, cuda)."""
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "cuda" and gpus == 0:
        raise ConfigError("device cuda: this faiss has no GPU support (install faiss-gpu, or use --device cpu)")
    return device != "cpu" and gpus > 0


# Below this much arithmetic per k-means iteration (points x k x D multiply-adds) a node is
# clustered on one CPU thread, several nodes at once: OpenMP start-up and barriers (or a GPU's
# launches and copies) cost more than the arithmetic of such small problems, and on a busy
# machine threads waiting at barriers can make them ten times slower.
SMALL_NODE_WORK = 1 << 27


def _node_centroids(x: np.ndarray, members: np.ndarray, node: int, k: int, niter: int, seed: int, init: str,
                    min_points: int, max_points: int, gpu_resources, threads: int | None) -> np.ndarray:
    """float32 [k, D] centroids of one node's clips ``x[members]`` (len(members) >= k * min_points).

    With more than ``k * max_points`` clips it trains on a subset of that size drawn, like the
    initialisation, from ``default_rng([seed, node])``. With ``gpu_resources`` (faiss
    StandardGpuResources, shared by all nodes) the k-means runs on that GPU; ``threads`` caps
    faiss's OpenMP threads for this call (None: leave them).
    """
    import faiss

    rng = np.random.default_rng([seed, node])
    if len(members) > k * max_points:
        members = members[np.sort(rng.choice(len(members), k * max_points, replace=False))]
    train = x[members]
    start = kmeans_plus_plus(train, k, rng) if init == "kmeans++" else None
    if threads is not None:
        faiss.omp_set_num_threads(threads)  # this thread's OpenMP setting only
    kmeans = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=int(rng.integers(2**31 - 1)), verbose=False,
        min_points_per_centroid=min_points, max_points_per_centroid=max_points,
    )
    if gpu_resources is not None:
        # what Kmeans(gpu=True) does, without creating GPU resources again for every node
        kmeans.index = faiss.GpuIndexFlatL2(gpu_resources, x.shape[1])
    kmeans.train(train, init_centroids=start)
    return np.asarray(kmeans.centroids, dtype=np.float32)


def hierarchical_kmeans(
    x: np.ndarray,
    k: int = 12,
    depth: int = 4,
    niter: int = 20,
    seed: int = 0,
    init: str = "kmeans++",
    min_points_per_centroid: int = 39,
    max_points_per_centroid: int = 256,
    gpu: bool = False,
    workers: int = 0,
    small_node_work: int = SMALL_NODE_WORK,
    progress=None,
) -> tuple[VocabTree, np.ndarray]:
    """Grow the tree on ``x`` (float32 [n, D], already normalised).

    Returns the tree and the leaf node of every row (int64 [n]). Node ``i`` draws its subset and
    initialisation from ``numpy.random.default_rng([seed, i])``, so the result does not depend on
    the order or the threads nodes are processed with. Small nodes (a k-means iteration of at most
    ``small_node_work`` multiply-adds) are clustered ``workers`` at a time (0: one per core), each
    on one CPU thread; larger ones one after the other on all threads, or on the GPU with ``gpu``.
    ``progress`` optionally makes a progress bar (``progress(total=, desc=, unit=)``).
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x.shape
    xt = torch.from_numpy(x)
    workers = workers or cpu_cores()
    gpu_resources = faiss.StandardGpuResources() if gpu else None
    too_few = max(k, k * min_points_per_centroid)
    centroids = [x.mean(axis=0, dtype=np.float64).astype(np.float32)[None] if n else np.zeros((1, dim), np.float32)]
    first_child, node_level, node_points = [-1], [0], [n]
    point_node = np.zeros(n, np.int64)
    frontier = np.array([0])
    for level in range(depth):
        order = np.argsort(point_node, kind="stable")
        sorted_nodes = point_node[order]
        starts = np.searchsorted(sorted_nodes, frontier, side="left")
        ends = np.searchsorted(sorted_nodes, frontier, side="right")
        members = {node: order[a:b] for node, a, b in zip(frontier.tolist(), starts.tolist(), ends.tolist())}
        splitting = [node for node in frontier.tolist() if len(members[node]) >= too_few]

        def work(node: int) -> int:
            return min(len(members[node]), k * max_points_per_centroid) * k * dim

        small = [node for node in splitting if work(node) <= small_node_work]
        found: dict[int, np.ndarray] = {}
        bar = progress(total=len(splitting), desc=f"level {level + 1}", unit="node") if progress else None
        for node in splitting:
            if node not in small:
                found[node] = _node_centroids(x, members[node], node, k, niter, seed, init, min_points_per_centroid,
                                              max_points_per_centroid, gpu_resources, threads=None)
                if bar is not None:
                    bar.update(1)
        if small:
            torch_threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    results = pool.map(
                        lambda node: _node_centroids(x, members[node], node, k, niter, seed, init, min_points_per_centroid,
                                                     max_points_per_centroid, None, threads=1),
                        small,
                    )
                    for node, result in zip(small, results):
                        found[node] = result
                        if bar is not None:
                            bar.update(1)
            finally:
                torch.set_num_threads(torch_threads)
        if bar is not None:
            bar.close()

        first_new = len(first_child)
        for node in splitting:
            children = torch.from_numpy(found[node])
            rows = xt if len(members[node]) == n else xt[members[node]]  # the root holds every row, in order
            assigned = nearest_centroid(rows, children, (children * children).sum(dim=1)).numpy()
            first = len(first_child)
            first_child[node] = first
            point_node[members[node]] = first + assigned
            centroids.append(found[node])
            first_child += [-1] * k
            node_level += [level + 1] * k
            node_points += np.bincount(assigned, minlength=k).tolist()
        log.info(
            "level %d: %d of %d node(s) split into %d children; %d kept as words (fewer than %d clips)",
            level + 1, len(splitting), len(frontier), len(splitting) * k, len(frontier) - len(splitting), too_few,
        )
        frontier = np.arange(first_new, len(first_child))
        if not len(frontier):
            break
    tree = VocabTree(
        k=k,
        centroids=np.concatenate(centroids).astype(np.float32),
        first_child=np.array(first_child, np.int32),
        node_level=np.array(node_level, np.int32),
        node_points=np.array(node_points, np.int64),
    )
    return tree, point_node


def descend(
    x: torch.Tensor,
    centroids: torch.Tensor,
    sqnorms: torch.Tensor,
    first_child: torch.Tensor,
    k: int,
    gathered: bool,
    gather_bytes: int = 1 << 30,
) -> torch.Tensor:
    """Leaf node (int64 [n]) of each row of ``x`` [n, D]: from the root, step to the nearest of the
    current node's ``k`` children until a leaf (a leaf above the last level stays where it is).

    Tensors live on one device: ``centroids`` [N, D], ``sqnorms`` [N] (their squared norms),
    ``first_child`` int64 [N]. ``gathered=True`` gathers every row's k candidate centroids and
    compares them in one batched product (``gather_bytes`` bounds the gathered block) — best on
    GPUs; ``gathered=False`` groups rows by node and runs one small matrix product per node — best
    on CPUs, where the gather costs more memory traffic than the arithmetic it saves.
    """
    node = torch.zeros(len(x), dtype=torch.long, device=x.device)
    offsets = torch.arange(k, device=x.device)
    while True:
        child0 = first_child[node]
        active = torch.nonzero(child0 >= 0).squeeze(1)
        if not len(active):
            return node
        child0 = child0[active]
        if gathered:
            rows = max(1, gather_bytes // (k * x.shape[1] * x.element_size()))
            for lo in range(0, len(active), rows):
                idx, first = active[lo : lo + rows], child0[lo : lo + rows]
                candidates = first[:, None] + offsets  # [m, k]
                dots = torch.bmm(centroids[candidates], x[idx][:, :, None]).squeeze(2)  # [m, k]
                best = (sqnorms[candidates] - 2.0 * dots).argmin(dim=1)
                node[idx] = first + best
        else:
            order = torch.argsort(child0, stable=True)
            active, child0 = active[order], child0[order]
            firsts, counts = torch.unique_consecutive(child0, return_counts=True)
            lo = 0
            for first, count in zip(firsts.tolist(), counts.tolist()):
                idx = active[lo : lo + count]
                rows = x if count == len(x) else x[idx]  # one group of every row: no copy needed
                best = nearest_centroid(rows, centroids[first : first + k], sqnorms[first : first + k])
                node[idx] = first + best
                lo += count


def quantisation_mse(z: np.ndarray, words: np.ndarray, word_vectors: np.ndarray) -> float:
    """Mean over rows of the squared distance between ``z`` [n, D] and its word's vector."""
    total = 0.0
    for lo in range(0, len(z), 65536):
        diff = z[lo : lo + 65536] - word_vectors[words[lo : lo + 65536]]
        total += float(np.einsum("ij,ij->", diff, diff, dtype=np.float64))
    return total / max(len(z), 1)


def flat_comparison(z: np.ndarray, words: np.ndarray, word_vectors: np.ndarray, niter: int, seed: int,
                    flat_sample: int, max_words: int, gpu: bool) -> dict:
    """Quantisation error of the hierarchy next to flat faiss k-means with as many centroids (its
    own initialisation, same ``niter``), both trained on and measured over the same clips: up to
    ``flat_sample`` clips of the sample, a seeded subset when the sample is larger; skipped (with
    the reason) above ``max_words`` words (0: always)."""
    import faiss

    words_count = len(word_vectors)
    if max_words == 0:
        return {"skipped": "flat_compare_max_words is 0"}
    if words_count > max_words:
        return {"skipped": f"{words_count} words > flat_compare_max_words {max_words} (its cost grows with words x clips)"}
    if words_count < 2:
        return {"skipped": "fewer than 2 words"}
    rows = np.arange(len(z))
    if len(z) > flat_sample:
        rows = np.sort(np.random.default_rng([seed, 2**32 - 1]).choice(len(z), flat_sample, replace=False))
    if len(rows) < words_count:
        return {"skipped": f"{len(rows)} clips < {words_count} centroids"}
    subset = np.ascontiguousarray(z[rows], dtype=np.float32)
    began = time.perf_counter()
    # min/max points per centroid chosen so that faiss neither warns nor subsamples: both
    # quantisers are measured on exactly the clips they were trained on.
    kmeans = faiss.Kmeans(
        subset.shape[1], words_count, niter=niter, seed=seed, gpu=gpu, verbose=False,
        min_points_per_centroid=1, max_points_per_centroid=-(-len(subset) // words_count),
    )
    kmeans.train(subset)
    distances, _ = kmeans.index.search(subset, 1)
    flat = float(distances.astype(np.float64).mean())
    hierarchical = quantisation_mse(subset, words[rows], word_vectors)
    return {
        "clips": int(len(rows)),
        "centroids": words_count,
        "hierarchical_mse": hierarchical,
        "flat_mse": flat,
        "ratio": hierarchical / flat if flat > 0 else None,
        "flat_seconds": round(time.perf_counter() - began, 3),
    }
