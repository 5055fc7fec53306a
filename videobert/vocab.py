"""Visual words: hierarchical k-means over clip features, tree descent, per-video token sequences.

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

Normalisation. Clustering runs on normalised features: raw S3D activations differ in scale from
dimension to dimension by orders of magnitude (randomly initialised networks give norms around
1e-5, pretrained ones around 1-10, and in both a few dimensions dominate the variance), and
Euclidean k-means would otherwise be decided by those few dimensions. The default is a
per-dimension z-score with mean and standard deviation measured on the training sample
(``standardise``; a dimension that (almost) never varies is not inflated). Optional steps, applied in this
order: ``center_per_video`` subtracts each video's mean feature (what stays constant within a
video, such as the background, is removed; tokenize does the same with the video's own mean),
``l2`` scales every feature to unit length instead of standardising, and ``pca_dim > 0``
PCA-whitens to that many dimensions (fitted on the sample). All statistics live in the codebook.

The codebook (``VOCAB/codebook.npz``, plain arrays, read with ``allow_pickle=False``):

=================  ==========================  ==================================================
``centroids``      float32 [N, D]              every node's centroid in the clustering space; nodes
                                               breadth first, so the nodes of level ``l`` are the
                                               contiguous rows where ``node_level == l``
``first_child``    int32 [N]                   index of a split node's first child (its ``k``
                                               children are contiguous), −1 for a leaf
``node_level``     int32 [N]                   0 for the root … ``depth``
``node_points``    int64 [N]                   training clips that reached the node
``word_node``      int32 [V]                   the leaf node of each visual word
``word_counts``    int64 [V]                   training clips of each word
``norm_mean``,     float32 [F]                 ``(x - norm_mean) / norm_scale`` (zeros and ones
``norm_scale``                                 unless ``standardise``)
``pca_mean``,      float32 [F], [P, F], [P]    ``((z - pca_mean) @ pca_components.T) / pca_scale``;
``pca_components``,                            P = 0 without PCA
``pca_scale``
``normalise``,     0-d str, bool               the normalisation options
``center_per_video``
``k``, ``depth``,  0-d int                     the settings the tree was grown with
``seed``, ``format``
=================  ==========================  ==================================================

Its hash (``codebook_hash``, over names, dtypes, shapes and bytes of the arrays) is recorded by the
vocab stage in ``vocab.json`` and by tokenize in ``tokens.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Mapping, Sequence

import numpy as np
import torch

from videobert.config import field
from videobert.device import DeviceName, resolve_device
from videobert.errors import ConfigError, InputError

log = logging.getLogger(__name__)

CODEBOOK_FORMAT = 1
Normalise = Literal["standardise", "l2", "none"]
Init = Literal["kmeans++", "random"]
Descent = Literal["auto", "grouped", "gathered"]


@dataclass
class VocabConfig:
    """Configuration of ``videobert vocab``."""

    k: int = field(12, help="children of every split node (the paper: 12)")
    depth: int = field(4, help="levels of the tree (the paper: 4): at most k^depth visual words")
    sample: int = field(1_000_000, help="clips the tree is trained on: a seeded uniform sample when the corpus has more")
    niter: int = field(20, help="k-means iterations at every node")
    seed: int = field(0, help="random seed of the sample, the subsets and the initialisation (same seed, same codebook)")
    init: Init = field("kmeans++", help="initialisation of every node's k-means: kmeans++ (seeded, computed here) or random (faiss's own)")
    device: DeviceName = field(
        "auto", help="faiss GPU for large nodes and the flat comparison: auto (when faiss has one), cpu, cuda (small nodes always use CPU threads)"
    )
    min_points_per_centroid: int = field(
        39, help="a node with fewer than k x this many clips (or fewer than k) is not split: it becomes a word (faiss's minimum: 39)"
    )
    max_points_per_centroid: int = field(
        256, help="a node with more clips than k x this fits its k-means on a seeded subset of that size (faiss's default: 256)"
    )
    normalise: Normalise = field(
        "standardise", help="before clustering: standardise (per-dimension z-score from the sample), l2 (unit length), none"
    )
    center_per_video: bool = field(False, help="subtract each video's mean feature first (removes what is constant within a video)")
    pca_dim: int = field(0, help="PCA-whiten to this many dimensions after normalising (0: off)")
    flat_compare_max_words: int = field(
        4096, help="compare with flat faiss k-means of as many centroids when there are at most this many words (0: never)"
    )
    flat_sample: int = field(100_000, help="clips of the sample the flat k-means comparison trains and measures on")
    exemplars: bool = field(True, help="write each word's exemplar thumbnail and the contact sheet (needs the videos)")
    exemplar_size: int = field(96, help="side of exemplar thumbnails, pixels")
    sheet_words: int = field(64, help="most frequent words shown on the contact sheet")
    workers: int = field(0, help="threads for small k-means nodes and exemplar frame grabs (0: one per CPU core)")

    def check(self) -> None:
        if self.k < 2:
            raise ConfigError("k: need at least 2 children per node")
        if self.depth < 1:
            raise ConfigError("depth: need at least 1 level")
        if self.k**self.depth >= 2**31:
            raise ConfigError(f"k^depth = {self.k ** self.depth}: too many visual words (int32 ids)")
        if self.sample < 1:
            raise ConfigError("sample: need at least 1 clip")
        if self.niter < 1:
            raise ConfigError("niter: need at least 1 iteration")
        if self.min_points_per_centroid < 1:
            raise ConfigError("min_points_per_centroid: need at least 1")
        if self.max_points_per_centroid < self.min_points_per_centroid:
            raise ConfigError("max_points_per_centroid: must be at least min_points_per_centroid")
        if self.pca_dim < 0:
            raise ConfigError("pca_dim: need 0 (off) or a positive number of dimensions")
        if self.flat_compare_max_words < 0 or self.flat_sample < 1:
            raise ConfigError("flat_compare_max_words: need >= 0; flat_sample: need >= 1")
        if self.exemplar_size < 16 or self.sheet_words < 0 or self.workers < 0:
            raise ConfigError("exemplar_size: need >= 16; sheet_words, workers: need >= 0")


@dataclass
class TokenizeConfig:
    """Configuration of ``videobert tokenize``."""

    device: DeviceName = field("auto", help="where the tree is descended: auto (CUDA when available), cpu, cuda")
    batch_clips: int = field(262_144, help="clips descended together (several videos share a batch)")

    def check(self) -> None:
        if self.batch_clips < 1:
            raise ConfigError("batch_clips: need at least 1")


# ---------------------------------------------------------------------------------------------
# Normalisation


def video_mean(features: np.ndarray) -> np.ndarray:
    """float32 [F]: the mean clip feature of one video (zeros for a video without clips)."""
    if len(features) == 0:
        return np.zeros(features.shape[1], np.float32)
    return features.mean(axis=0, dtype=np.float64).astype(np.float32)


@dataclass
class Normalisation:
    """The map from raw clip features [n, F] to the clustering space [n, D] (D = P with PCA, else F).

    ``center_per_video`` is applied by the caller, who knows the videos (see :func:`video_mean`);
    :meth:`apply` does the rest.
    """

    method: str
    center_per_video: bool
    mean: np.ndarray  # float32 [F]
    scale: np.ndarray  # float32 [F]
    pca_mean: np.ndarray  # float32 [F]
    pca_components: np.ndarray  # float32 [P, F]
    pca_scale: np.ndarray  # float32 [P]
    _on_device: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def feature_dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def dim(self) -> int:
        return int(self.pca_components.shape[0]) or self.feature_dim

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        key = str(device)
        if key not in self._on_device:
            inverse = 1.0 / self.scale.astype(np.float64)
            arrays = {
                "inverse_scale": inverse.astype(np.float32),
                "shift": (-self.mean.astype(np.float64) * inverse).astype(np.float32),
                "pca_mean": self.pca_mean,
                "pca_components": self.pca_components,
                "pca_scale": self.pca_scale,
            }
            self._on_device[key] = {n: torch.from_numpy(a).to(device) for n, a in arrays.items()}
        return self._on_device[key]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """[n, F] float16/32 (already centred per video if asked) -> [n, D] float32, on x's device."""
        t = self._tensors(x.device)
        # (x - mean) / scale as one fused pass that also widens float16 input
        x = torch.addcmul(t["shift"], x, t["inverse_scale"])
        if self.method == "l2":
            x = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        if len(self.pca_scale):
            x = ((x - t["pca_mean"]) @ t["pca_components"].T) / t["pca_scale"]
        return x


def _mean_std(sample: np.ndarray, rows: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation (float64 [F] each), two passes over row blocks so
    that no float64 copy of the whole sample is made."""
    n = max(len(sample), 1)
    mean = sum(sample[i : i + rows].sum(axis=0, dtype=np.float64) for i in range(0, len(sample), rows)) / n
    square = sum(
        np.square(sample[i : i + rows].astype(np.float64) - mean).sum(axis=0) for i in range(0, len(sample), rows)
    )
    return np.asarray(mean, np.float64), np.sqrt(np.asarray(square, np.float64) / n)


def fit_normalisation(sample: np.ndarray, method: str = "standardise", center_per_video: bool = False, pca_dim: int = 0) -> Normalisation:
    """Fit the normalisation on ``sample`` (float32 [n, F], already centred per video if asked).

    ``standardise`` measures each dimension's mean and standard deviation (float64; deviations
    below 1e-6 of the largest count as that floor); PCA is fitted
    on the normalised sample, eigenvectors sorted by variance with a fixed sign (largest entry
    positive) so that the same sample gives the same codebook.
    """
    n, dim = sample.shape
    if method == "standardise":
        mean, std = _mean_std(sample)
        # A dimension that (almost) never varies is left at (almost) zero rather than having its
        # rounding noise blown up to unit variance.
        scale = np.maximum(std, 1e-6 * std.max() or 1.0)
    elif method in ("l2", "none"):
        mean, scale = np.zeros(dim), np.ones(dim)
    else:
        raise ConfigError(f"normalise: {method!r} is not one of standardise, l2, none")
    norm = Normalisation(
        method, center_per_video, mean.astype(np.float32), scale.astype(np.float32),
        np.zeros(dim, np.float32), np.zeros((0, dim), np.float32), np.zeros(0, np.float32),
    )
    if pca_dim:
        if pca_dim > dim or pca_dim >= n:
            raise ConfigError(f"pca_dim {pca_dim}: needs at most {dim} dimensions and fewer than the {n} sampled clips")
        z = norm.apply(torch.from_numpy(sample))
        z_mean = z.mean(dim=0, dtype=torch.float64)
        cov = torch.zeros(dim, dim, dtype=torch.float64)
        for chunk in torch.split(z, 65536):
            centred = (chunk.double() - z_mean).float()
            cov += (centred.T @ centred).double()
        values, vectors = np.linalg.eigh(cov.numpy() / max(n - 1, 1))
        top = np.argsort(values)[::-1][:pca_dim]
        components = vectors[:, top].T
        signs = np.sign(components[np.arange(pca_dim), np.abs(components).argmax(axis=1)])
        components *= signs[:, None]
        # Whitening divides by each component's standard deviation; the floor keeps directions
        # without variance (a sample of rank < pca_dim) from blowing up rounding noise.
        floor = max(values.max(), 0.0) * 1e-8 or 1.0
        norm = dataclasses.replace(
            norm,
            pca_mean=z_mean.numpy().astype(np.float32),
            pca_components=components.astype(np.float32),
            pca_scale=np.sqrt(np.maximum(values[top], floor)).astype(np.float32),
        )
    return norm


# ---------------------------------------------------------------------------------------------
# The tree


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
    workers = workers or os.cpu_count() or 1
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


# ---------------------------------------------------------------------------------------------
# The codebook: normalisation + tree, saved, loaded, tokenizing


def _batches(lengths: Sequence[int], batch_clips: int) -> Iterator[list[tuple[int, int, int]]]:
    """Pieces ``(video, start, stop)`` grouped into batches of ``batch_clips`` clips (a long video is
    split across batches; an empty one yields nothing)."""
    pieces: list[tuple[int, int, int]] = []
    filled = 0
    for video, length in enumerate(lengths):
        start = 0
        while start < length:
            take = min(length - start, batch_clips - filled)
            pieces.append((video, start, start + take))
            filled += take
            start += take
            if filled == batch_clips:
                yield pieces
                pieces, filled = [], 0
    if pieces:
        yield pieces


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():
        # Read-only arrays (memory maps) are fine: the tensor is only read.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array))


class Codebook:
    """A visual vocabulary: normalisation and tree. ``tokenize`` maps one video's features to
    words; ``word_vectors`` gives each word's centroid (the model initialises the visual-word
    embeddings from them). Load one with :func:`load`."""

    def __init__(self, tree: VocabTree, normalisation: Normalisation, depth: int, seed: int,
                 device: str | torch.device = "auto", batch_clips: int = 262_144, descent: Descent = "auto"):
        self.tree = tree
        self.normalisation = normalisation
        self.depth = depth
        self.seed = seed
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.batch_clips = batch_clips
        # auto: gathered on CUDA (a fixed number of kernels, no host round trips), grouped on CPU
        self.gathered = descent == "gathered" or (descent == "auto" and self.device.type == "cuda")
        self.path: Path | None = None
        self._on_device: dict[str, torch.Tensor] | None = None

    @property
    def size(self) -> int:
        """Number of visual words V."""
        return self.tree.size

    @property
    def k(self) -> int:
        return self.tree.k

    @property
    def dim(self) -> int:
        """Dimension D of the clustering space (of the word vectors)."""
        return self.normalisation.dim

    @property
    def feature_dim(self) -> int:
        """Dimension F of the raw clip features the codebook reads."""
        return self.normalisation.feature_dim

    @property
    def word_counts(self) -> np.ndarray:
        """int64 [V]: training clips of each word."""
        return self.tree.node_points[self.tree.word_node]

    def word_vectors(self) -> np.ndarray:
        """float32 [V, D]: each word's leaf centroid in the normalised clustering space."""
        return self.tree.centroids[self.tree.word_node].copy()

    def _tensors(self) -> dict[str, torch.Tensor]:
        if self._on_device is None:
            centroids = torch.from_numpy(self.tree.centroids).to(self.device)
            self._on_device = {
                "centroids": centroids,
                "sqnorms": (centroids * centroids).sum(dim=1),
                "first_child": torch.from_numpy(self.tree.first_child.astype(np.int64)).to(self.device),
                "node_word": torch.from_numpy(self.tree.node_word).to(self.device),
            }
        return self._on_device

    def _check(self, features: np.ndarray) -> None:
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features of shape {list(features.shape)}, expected [n_clips, {self.feature_dim}]")

    def normalise(self, features: np.ndarray) -> np.ndarray:
        """float32 [n, D]: one video's features [n, F] in the clustering space (centred by the
        video's own mean when the codebook says so)."""
        self._check(features)
        x = _as_tensor(features).to(self.device).float()
        if self.normalisation.center_per_video:
            x = x - torch.from_numpy(video_mean(features)).to(self.device)
        return self.normalisation.apply(x).cpu().numpy()

    def words_of_normalised(self, z: torch.Tensor) -> torch.Tensor:
        """int32 [n] words of rows already in the clustering space (``z`` [n, D] on ``self.device``)."""
        t = self._tensors()
        leaves = descend(z, t["centroids"], t["sqnorms"], t["first_child"], self.k, self.gathered)
        return t["node_word"][leaves]

    def tokenize(self, features: np.ndarray) -> np.ndarray:
        """int32 [n_clips]: the visual word (0 … V−1) of each clip of one video (``features``
        [n_clips, F], any float dtype; the whole video, so that per-video centring can be done)."""
        return self.tokenize_many([features])[0]

    def tokenize_many(self, videos: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`tokenize` for several videos at once: clips of different videos share batches of
        ``batch_clips``, which is what keeps a GPU busy on short videos."""
        for features in videos:
            self._check(features)
        out = [np.empty(len(v), np.int32) for v in videos]
        means = [video_mean(v) for v in videos] if self.normalisation.center_per_video else None
        for pieces in _batches([len(v) for v in videos], self.batch_clips):
            parts = [videos[v][a:b] for v, a, b in pieces]
            host = parts[0] if len(parts) == 1 else np.concatenate(parts)
            x = _as_tensor(host).to(self.device, non_blocking=True)
            if x.dtype not in (torch.float16, torch.float32):
                x = x.float()
            if means is not None:
                x = x.float()
                piece_means = _as_tensor(np.stack([means[v] for v, _, _ in pieces])).to(self.device)
                lengths = torch.tensor([b - a for _, a, b in pieces], device=self.device)
                x = x - piece_means.repeat_interleave(lengths, dim=0)
            words = self.words_of_normalised(self.normalisation.apply(x)).cpu().numpy()
            offset = 0
            for v, a, b in pieces:
                out[v][a:b] = words[offset : offset + b - a]
                offset += b - a
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The codebook as the named arrays of ``codebook.npz``."""
        tree, norm = self.tree, self.normalisation
        return {
            "format": np.array(CODEBOOK_FORMAT),
            "k": np.array(tree.k),
            "depth": np.array(self.depth),
            "seed": np.array(self.seed),
            "centroids": tree.centroids,
            "first_child": tree.first_child,
            "node_level": tree.node_level,
            "node_points": tree.node_points,
            "word_node": tree.word_node,
            "word_counts": self.word_counts,
            "normalise": np.array(norm.method),
            "center_per_video": np.array(norm.center_per_video),
            "norm_mean": norm.mean,
            "norm_scale": norm.scale,
            "pca_mean": norm.pca_mean,
            "pca_components": norm.pca_components,
            "pca_scale": norm.pca_scale,
        }

    @property
    def hash(self) -> str:
        """Short sha256 of the codebook's arrays (names, dtypes, shapes, bytes)."""
        return codebook_hash(self.arrays())

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/codebook.npz`` atomically; returns its path."""
        from videobert.store import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, **self.arrays())
        path = Path(folder) / "codebook.npz"
        atomic_write_bytes(path, buffer.getvalue())
        return path


def codebook_hash(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


_CODEBOOK_KEYS = (
    "format", "k", "depth", "seed", "centroids", "first_child", "node_level", "node_points", "word_node",
    "normalise", "center_per_video", "norm_mean", "norm_scale", "pca_mean", "pca_components", "pca_scale",
)


def load(vocab_dir: str | Path, device: str = "auto", batch_clips: int = 262_144) -> Codebook:
    """The visual vocabulary of a ``videobert vocab`` folder; tokenizes on ``device`` (auto: CUDA
    when available)."""
    path = Path(vocab_dir) / "codebook.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in _CODEBOOK_KEYS if key not in data.files]
            if missing:
                raise InputError(f"{path}: not a codebook (missing {', '.join(missing)})")
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise InputError(f"{vocab_dir}: not a vocabulary folder (no codebook.npz; run 'videobert vocab')") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable codebook ({exc})") from None
    if int(arrays["format"]) != CODEBOOK_FORMAT:
        raise InputError(f"{path}: codebook format {int(arrays['format'])}, this version reads {CODEBOOK_FORMAT}")
    tree = VocabTree(
        k=int(arrays["k"]),
        centroids=arrays["centroids"],
        first_child=arrays["first_child"],
        node_level=arrays["node_level"],
        node_points=arrays["node_points"],
    )
    if not np.array_equal(tree.word_node, arrays["word_node"]):
        raise InputError(f"{path}: inconsistent codebook (word_node does not match the tree's leaves)")
    norm = Normalisation(
        str(arrays["normalise"]), bool(arrays["center_per_video"]), arrays["norm_mean"], arrays["norm_scale"],
        arrays["pca_mean"], arrays["pca_components"], arrays["pca_scale"],
    )
    codebook = Codebook(tree, norm, depth=int(arrays["depth"]), seed=int(arrays["seed"]), device=device, batch_clips=batch_clips)
    codebook.path = Path(vocab_dir)
    return codebook


# ---------------------------------------------------------------------------------------------
# Quantisation error


def quantisation_mse(z: np.ndarray, words: np.ndarray, word_vectors: np.ndarray) -> float:
    """Mean over rows of the squared distance between ``z`` [n, D] and its word's vector."""
    total = 0.0
    for lo in range(0, len(z), 65536):
        diff = z[lo : lo + 65536] - word_vectors[words[lo : lo + 65536]]
        total += float(np.einsum("ij,ij->", diff, diff, dtype=np.float64))
    return total / max(len(z), 1)


def flat_comparison(z: np.ndarray, words: np.ndarray, word_vectors: np.ndarray, cfg: VocabConfig, gpu: bool) -> dict:
    """Quantisation error of the hierarchy next to flat faiss k-means with as many centroids (its
    own initialisation, same ``niter``), both trained on and measured over the same clips: up to
    ``cfg.flat_sample`` clips of the sample, a seeded subset when the sample is larger."""
    import faiss

    words_count = len(word_vectors)
    if cfg.flat_compare_max_words == 0:
        return {"skipped": "flat_compare_max_words is 0"}
    if words_count > cfg.flat_compare_max_words:
        return {"skipped": f"{words_count} words > flat_compare_max_words {cfg.flat_compare_max_words} (its cost grows with words x clips)"}
    if words_count < 2:
        return {"skipped": "fewer than 2 words"}
    rows = np.arange(len(z))
    if len(z) > cfg.flat_sample:
        rows = np.sort(np.random.default_rng([cfg.seed, 2**32 - 1]).choice(len(z), cfg.flat_sample, replace=False))
    if len(rows) < words_count:
        return {"skipped": f"{len(rows)} clips < {words_count} centroids"}
    subset = np.ascontiguousarray(z[rows], dtype=np.float32)
    began = time.perf_counter()
    # min/max points per centroid chosen so that faiss neither warns nor subsamples: both
    # quantisers are measured on exactly the clips they were trained on.
    kmeans = faiss.Kmeans(
        subset.shape[1], words_count, niter=cfg.niter, seed=cfg.seed, gpu=gpu, verbose=False,
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


# ---------------------------------------------------------------------------------------------
# Token folders


def load_tokens(tokens_dir: str | Path) -> dict[str, np.ndarray]:
    """``{video_id: int array [n_clips]}`` of visual words (0 … V-1) from a tokenize folder."""
    tokens_dir = Path(tokens_dir)
    if not (tokens_dir / "tokens.json").exists():
        raise InputError(f"{tokens_dir}: not a tokens folder (no tokens.json; run 'videobert tokenize')")
    tokens = {}
    for path in sorted(tokens_dir.glob("*.npy")):
        if path.name.startswith("."):
            continue
        try:
            tokens[path.stem] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable tokens ({exc})") from None
    return tokens


def tokens_meta(tokens_dir: str | Path) -> dict:
    """``tokens.json`` of a tokenize folder: vocab, vocab_size, fps, clip_frames, clip_seconds."""
    import json

    path = Path(tokens_dir) / "tokens.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found (run 'videobert tokenize')") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
