"""The backbone: torchvision's S3D, one 1024-d feature per clip.

* :func:`build_s3d` — S3D with Kinetics-400 weights from a local file (tensors only: loaded with
  ``weights_only=True``), or the seeded random initialisation of :mod:`videobert.features.s3d_init`.
* :class:`ClipEncoder` — uint8 clips ``[B, T, H, W, 3]`` → float32 features ``[B, 1024]``: the
  global average of ``model.features`` (before the classifier), with torchvision's Kinetics-400
  input normalisation applied on the device, the channels-last 3-D layout and autocast (on the CPU
  with batch norms folded into the convolutions: :func:`videobert.features.s3d_cpu.for_cpu`).

Another backbone plugs in here: a builder that returns the model and what initialised it, and an
encoder with the same ``submit``/``__call__`` contract (docs/architecture.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from videobert.errors import InputError
from videobert.features.s3d_cpu import for_cpu
from videobert.features.s3d_init import random_init_s3d
from videobert.runtime import autocast
from videobert.store import file_sha256, safe_torch_load

log = logging.getLogger(__name__)

FEATURE_DIM = 1024
MODEL_NAME = "torchvision S3D, global average of model.features"
# torchvision's S3D_Weights.KINETICS400_V1 transforms: frames in [0, 1], then these per channel.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
RANDOM_INIT = "random-init"
MIN_CLIP_FRAMES = 8  # S3D's temporal pooling needs at least 8 frames
MIN_SIZE = 112


def load_s3d_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision-format S3D state dict from a local file (:func:`videobert.store.safe_torch_load`:
    a file holding arbitrary Python objects is refused). Accepts a bare state dict or one wrapped
    under ``state_dict`` / ``model``. Raises :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found", "missing")
    state = safe_torch_load(path, "S3D weights")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a state dict of tensors (torch.save(model.state_dict(), path))")
    return state


def build_s3d(weights: str | Path | None = None, init_seed: int = 0) -> tuple[nn.Module, str]:
    """torchvision's S3D in eval mode, and what initialised it: the weights file's sha256, or
    ``"random-init"``. Only ``features.*`` is loaded (strictly): the classifier is never used, so a
    head fine-tuned to another number of classes is fine."""
    # torchvision is imported here, when a backbone is built: the stages that only read feature
    # files (vocab, corpus, pretrain, evaluate) do not carry its ~90 MB of modules in every process
    from torchvision.models.video import s3d

    model = s3d(weights=None)
    if weights is None:
        log.warning(
            "NO PRETRAINED WEIGHTS: S3D is randomly initialised (seed %d). The features are good for "
            "testing the pipeline, not for research; pass --s3d-weights with torchvision's Kinetics-400 S3D "
            "state dict (s3d-d76dad2f.pth).", init_seed,
        )
        random_init_s3d(model, init_seed)
        return model.eval(), RANDOM_INIT
    state = load_s3d_state(weights)
    prefix = "features."
    features = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        model.features.load_state_dict(features, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise InputError(f"{weights}: not a torchvision S3D state dict ({detail})") from None
    return model.eval(), file_sha256(weights)


class PendingFeatures:
    """Features of a submitted batch; :meth:`result` waits for them (float32 numpy ``[B, 1024]``)."""

    def __init__(self, features: torch.Tensor):
        if features.is_cuda:
            self._host = torch.empty(features.shape, dtype=features.dtype, pin_memory=True)
            self._host.copy_(features, non_blocking=True)
            self._done = torch.cuda.Event()
            self._done.record()
        else:
            self._host, self._done = features, None

    def result(self) -> np.ndarray:
        if self._done is not None:
            self._done.synchronize()
        return self._host.numpy()


class ClipEncoder:
    """S3D clip features on one device: uint8 clips ``[B, T, H, W, 3]`` → float32 ``[B, 1024]``.

    Frames travel as uint8 and are normalised on the device. ``[B, T, H, W, 3]`` permuted to
    ``[B, 3, T, H, W]`` is already the channels-last 3-D layout the model is converted to, so no
    copy is made for it. On the CPU the model is :func:`videobert.features.s3d_cpu.for_cpu`'s copy.
    ``precision`` is applied with :func:`videobert.runtime.autocast`.
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32"):
        self.device = device
        self.precision = precision
        if device.type == "cpu":
            self.model = for_cpu(model)
        else:
            self.model = model.eval().requires_grad_(False).to(device, memory_format=torch.channels_last_3d)
        mean = torch.tensor(KINETICS_MEAN, device=device).view(1, 3, 1, 1, 1)
        std = torch.tensor(KINETICS_STD, device=device).view(1, 3, 1, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std
        if device.type == "cuda":
            torch.cuda.set_device(device)  # streams, events and pinned buffers of this GPU
            torch.backends.cudnn.benchmark = True

    def submit(self, clips: torch.Tensor) -> PendingFeatures:
        """Start the features of ``clips`` (uint8 ``[B, T, H, W, 3]``, any device) without waiting."""
        with torch.inference_mode():
            frames = clips.to(self.device, non_blocking=True).permute(0, 4, 1, 2, 3)
            frames = frames.float().mul_(self._scale).sub_(self._shift)
            with autocast(self.device, self.precision):
                activations = self.model.features(frames)
            return PendingFeatures(activations.float().mean(dim=(2, 3, 4)))

    def __call__(self, clips: torch.Tensor | np.ndarray) -> np.ndarray:
        """float32 ``[B, 1024]`` features of uint8 clips ``[B, T, H, W, 3]``."""
        return self.submit(torch.as_tensor(clips)).result()
