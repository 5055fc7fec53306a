"""Device and numeric precision, decided in one place.

``resolve_device("auto")`` picks CUDA when it is available (the local rank's GPU under torchrun),
else the CPU. ``autocast(device, precision)`` is the one mixed-precision context every stage uses:
bf16 (or fp16) on CUDA, a no-op in fp32 — CPU runs stay fp32.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import Literal

import torch

from videobert.distributed import dist_env
from videobert.errors import ConfigError

DeviceName = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda:<local rank>`` when CUDA is available, else ``cpu``; ``cuda`` without a GPU is an error."""
    if name == "cpu":
        return torch.device("cpu")
    if name in ("auto", "cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda", dist_env().local_rank % torch.cuda.device_count())
        if name == "cuda":
            raise ConfigError("--device cuda: no CUDA GPU is visible (use --device cpu or auto)")
        return torch.device("cpu")
    raise ConfigError(f"device {name!r} is not one of auto, cpu, cuda")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA GPUs that support it (fp16 on older ones), fp32 on CPU."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"precision {precision!r} is not one of auto, fp32, bf16, fp16")
    if device.type == "cpu" and precision == "fp16":
        raise ConfigError("precision fp16 needs a CUDA device (use fp32 or bf16 on CPU)")
    return precision


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """Mixed-precision context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
