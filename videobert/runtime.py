"""Where a process runs and with whom: device and precision, the machine's cores, and its place
among torchrun (or SLURM) workers — decided here, once, for every stage.

* :data:`DeviceName` and :data:`Precision` are the types of every config's ``device`` and
  ``precision`` fields; :func:`resolve_device` (``auto``: the local rank's CUDA GPU when one is
  visible, else the CPU) and :func:`resolve_precision` (``auto``: bf16 or fp16 on CUDA, fp32 on the
  CPU) turn them into what runs. :func:`autocast` is the one mixed-precision context every stage
  uses: a no-op in fp32.
* Sharding: batch stages (extract, tokenize, asr, corpus) give each worker a disjoint share of the videos.
  The share combines an explicit ``--shard I/N`` (for job arrays: I is 0-based) with, under
  ``torchrun``, the process's rank: worker ``I * world + rank`` of ``N * world``. Items are dealt
  round-robin over the sorted ids, so shares differ in size by at most one item and do not depend
  on the order of the manifest.
* :func:`process_group` joins torchrun's process group for the length of a stage (a stand-in that
  does nothing when the process runs alone).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence, TypeVar

import numpy as np
import torch

from videobert.errors import ConfigError
from videobert.threads import cpu_budget

T = TypeVar("T")

# Ranks of a batch stage wait for each other only at the start and the end; a rank with longer
# videos may finish hours after the others, and torchrun tears the group down if one rank dies.
LONG_BARRIER = datetime.timedelta(hours=72)

DeviceName = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------- workers
@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count`` (0-based)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, items: Sequence[T], key: Callable[[T], str]) -> list[T]:
        """This worker's share of ``items``: every ``count``-th item of the list sorted by ``key``."""
        ordered = sorted(items, key=key)
        return ordered[self.index :: self.count]


def parse_shard(text: str | None) -> Shard:
    """``"2/8"`` -> Shard(2, 8); None or ``""`` -> the whole job."""
    if not text:
        return Shard()
    index_text, sep, count_text = str(text).partition("/")
    if not sep or not index_text.strip().isdigit() or not count_text.strip().isdigit():
        raise ConfigError(f"shard '{text}' is not of the form I/N (0-based, e.g. 0/4)")
    return Shard(int(index_text), int(count_text))


@dataclass(frozen=True)
class DistEnv:
    """The process's place in a torchrun (or SLURM srun) launch; rank 0 of 1 when launched alone."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def has_rendezvous(self) -> bool:
        """torchrun gives its ranks a rendezvous (MASTER_ADDR); SLURM tasks without one can only
        take their share of the work, not wait for each other."""
        return self.is_distributed and "MASTER_ADDR" in os.environ

    @property
    def local_processes(self) -> int:
        """Ranks sharing this machine."""
        return int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))


def dist_env() -> DistEnv:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (torchrun), falling back to SLURM_PROCID / SLURM_NTASKS."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and int(env["SLURM_NTASKS"]) > 1:
        return DistEnv(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return DistEnv()


def combined_shard(shard: Shard, env: DistEnv | None = None) -> Shard:
    """The worker's effective share: the job-array shard subdivided among torchrun ranks."""
    env = env or dist_env()
    return Shard(shard.index * env.world_size + env.rank, shard.count * env.world_size)


class ProcessGroup:
    """torch.distributed's default group while a stage runs, or a stand-in for a process alone."""

    def __init__(self, active: bool):
        self.active = active

    @property
    def rank(self) -> int:
        return torch.distributed.get_rank() if self.active else 0

    @property
    def world_size(self) -> int:
        return torch.distributed.get_world_size() if self.active else 1

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over the ranks."""
        if not self.active:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def sum_array(self, array: np.ndarray) -> np.ndarray:
        """A NumPy array summed over the ranks (in float64: exact for counts below 2^53)."""
        if not self.active:
            return np.asarray(array)
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
        torch.distributed.all_reduce(tensor)
        return tensor.numpy()

    def max(self, value: float) -> float:
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return float(tensor.item())


@contextlib.contextmanager
def process_group(active: bool, backend: str = "gloo", timeout: datetime.timedelta | None = None) -> Iterator[ProcessGroup]:
    """Join the launcher's process group for the duration (``active``: launched by torchrun), and
    leave it after. A group someone else initialised is used as it is and left to them."""
    if active and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, timeout=timeout)
        try:
            yield ProcessGroup(True)
        finally:
            torch.distributed.destroy_process_group()
    else:
        yield ProcessGroup(active)


# --------------------------------------------------------------------------- device and precision
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


def autocast(device: torch.device, precision: str):
    """Mixed-precision context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo: the CPU computes bf16 natively


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (``flags`` of /proc/cpuinfo; empty where there is none)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=1)
def cpu_bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX, and oneDNN's bf16 kernels
    for it), from the CPU's flags: the same answer every time, however busy the machine is.
    Where bf16 is emulated it runs S3D many times slower than fp32 (BENCHMARKS.md); where it is
    native it was the faster of the two on every CPU measured."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    flags = cpu_flags()
    return not flags or bool(flags & set(BF16_CPU_FLAGS))  # no /proc/cpuinfo: oneDNN's own check stands


def device_name(device: torch.device) -> str:
    """``cpu``, or ``cuda (<GPU model>)``, for provenance files."""
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


# --------------------------------------------------------------------------- the machine
def cpu_cores() -> int:
    """CPUs this process may compute on: its affinity capped by its cgroup's CPU quota
    (:func:`videobert.threads.cpu_budget`)."""
    return cpu_budget()


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
