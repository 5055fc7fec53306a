"""Who am I among the workers: torchrun / SLURM environment, and sharding items by rank.

Batch stages (extract, tokenize, asr) give each worker a disjoint share of the videos. The share
is the combination of an explicit ``--shard I/N`` (for job arrays: I is 0-based) and, under
``torchrun``, the process's rank: worker ``I * world + rank`` of ``N * world``. Items are dealt
round-robin over the sorted ids, so shares differ in size by at most one item and do not depend on
the order of the manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from videobert.errors import ConfigError

T = TypeVar("T")


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
