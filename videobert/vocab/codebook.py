"""The codebook: normalisation and tree together, tokenizing, and its file (``VOCAB/codebook.npz``,
plain arrays, read with ``allow_pickle=False``):

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

import hashlib
import io
import warnings
from pathlib import Path
from typing import Iterator, Literal, Mapping, Sequence

import numpy as np
import torch

from videobert.errors import InputError
from videobert.readers import load_npz
from videobert.runtime import resolve_device
from videobert.store import atomic_write_bytes
from videobert.vocab.kmeans import VocabTree, descend
from videobert.vocab.normalise import Normalisation, video_mean

CODEBOOK_FORMAT = 1
Descent = Literal["auto", "grouped", "gathered"]


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
    embeddings from them). Read one with :meth:`load` (``videobert.vocab.load(VOCAB)`` for a folder)."""

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

    def save(self, path: str | Path) -> None:
        """Write the arrays to ``path`` (``.npz``) atomically."""
        buffer = io.BytesIO()
        np.savez(buffer, **self.arrays())
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", batch_clips: int = 262_144) -> "Codebook":
        """The codebook in file ``path``; tokenizes on ``device`` (auto: CUDA when available).
        The archive is read by :func:`videobert.readers.load_npz` (only the codebook's own members,
        each header checked and the total bounded before anything is read) and the arrays checked
        to make one tree before it is used; anything else is an :class:`InputError` naming the file."""
        path = Path(path)
        arrays = load_npz(path, "codebook", keys=(*_CODEBOOK_KEYS, "word_counts"), required=_CODEBOOK_KEYS)
        _check_codebook_arrays(path, arrays)
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
        return cls(tree, norm, depth=int(arrays["depth"]), seed=int(arrays["seed"]), device=device, batch_clips=batch_clips)


def _check_codebook_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Refuse arrays that do not make one tree and one normalisation (naming the array), so that a
    damaged or hand-made codebook fails here, not as an IndexError in the middle of tokenizing."""
    def bad(name: str, need: str) -> InputError:
        array = arrays[name]
        return InputError(f"{path}: inconsistent codebook ({name} is {array.dtype} {list(array.shape)}; need {need})")

    for name in ("format", "k", "depth", "seed"):
        if arrays[name].shape != () or arrays[name].dtype.kind not in "iu":
            raise bad(name, "a whole number")
    if arrays["normalise"].shape != () or arrays["normalise"].dtype.kind != "U":
        raise bad("normalise", "a string")
    if arrays["center_per_video"].shape != () or arrays["center_per_video"].dtype.kind not in "biu":
        raise bad("center_per_video", "a boolean")
    centroids = arrays["centroids"]
    if centroids.ndim != 2 or centroids.dtype != np.float32 or not np.isfinite(centroids).all():
        raise bad("centroids", "finite float32 [nodes, dim]")
    nodes, k = len(centroids), int(arrays["k"])
    if k < 2 or nodes < 1:
        raise bad("k", "at least 2, and at least one node")
    for name in ("first_child", "node_level", "node_points"):
        if arrays[name].shape != (nodes,) or arrays[name].dtype.kind not in "iu":
            raise bad(name, f"integers [{nodes}], one per centroid")
    first = arrays["first_child"].astype(np.int64)
    split = first >= 0
    if (first[~split] != -1).any() or (first[split] < 1).any() or (first[split] + k > nodes).any():
        raise bad("first_child", f"-1 or the first of {k} children inside the {nodes} nodes")
    for name in ("norm_mean", "norm_scale", "pca_mean", "pca_scale", "pca_components"):
        if arrays[name].dtype.kind != "f" or not np.isfinite(arrays[name]).all():
            raise bad(name, "finite floats")
    features = arrays["norm_mean"].shape[0] if arrays["norm_mean"].ndim == 1 else -1
    for name in ("norm_scale", "pca_mean"):
        if arrays[name].shape != (features,):
            raise bad(name, f"[{features}], as norm_mean")
    if (arrays["norm_scale"] == 0).any():
        raise bad("norm_scale", "no zero")
    components = arrays["pca_components"]
    if components.ndim != 2 or components.shape[1] != features or arrays["pca_scale"].shape != (components.shape[0],):
        raise bad("pca_components", f"[P, {features}] with pca_scale [P]")
    if centroids.shape[1] != (components.shape[0] or features):
        raise bad("centroids", f"{components.shape[0] or features} numbers per node (the normalised features')")


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
