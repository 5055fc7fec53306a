"""Normalisation: the map from raw clip features to the space the visual words are clustered in.

Raw S3D activations differ in scale from dimension to dimension by orders of magnitude (randomly
initialised networks give norms around 1e-5, pretrained ones around 1-10, and in both a few
dimensions dominate the variance), and Euclidean k-means would otherwise be decided by those few
dimensions. The default is a per-dimension z-score with mean and standard deviation measured on
the training sample (``standardise``; a dimension that (almost) never varies is not inflated).
Optional steps, applied in this order: ``center_per_video`` subtracts each video's mean feature
(what stays constant within a video, such as the background, is removed; tokenize does the same
with the video's own mean), ``l2`` scales every feature to unit length instead of standardising,
and ``pca_dim > 0`` PCA-whitens to that many dimensions (fitted on the sample). All statistics
live in the codebook.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from videobert.errors import ConfigError

Normalise = Literal["standardise", "l2", "none"]


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
