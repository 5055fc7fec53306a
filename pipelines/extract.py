"""``videobert extract MANIFEST -o FEATURES``: S3D features of 1.5 s clips, one .npy per video.

Also runs under ``torchrun --nproc-per-node G -m pipelines.extract ...``: each rank takes a disjoint
share of the videos (combined with ``--shard I/N`` for job arrays).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import sys
from pathlib import Path
from typing import Iterator, Sequence

import torch

from pipelines.common import add_config_arguments, new_parser, resolve_config, run_main
from videobert import config as cfgmod
from videobert.device import resolve_device, resolve_precision
from videobert.distributed import combined_shard, dist_env, parse_shard
from videobert.errors import ConfigError, StageError
from videobert.features import (
    ClipEncoder,
    ExtractConfig,
    ExtractSummary,
    build_s3d,
    claim_features_dir,
    extract_features,
    extraction_meta,
    remove_features,
    resolve_runtime,
)
from videobert.logs import progress
from videobert.manifest import read_manifest
from videobert.store import FailureLog, atomic_write_text, failures_name, prepare_output_dir
from videobert.video import check_cuda_decoder

log = logging.getLogger("pipelines.extract")

# Ranks wait for each other only at the start and the end; a rank with longer videos may finish
# hours after the others, and torchrun tears the group down if one rank dies.
BARRIER_TIMEOUT = datetime.timedelta(hours=72)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "videobert extract",
        "Decode each video with ffmpeg at --fps, cut it into non-overlapping clips of --clip-frames frames\n"
        "(clip i covers [i*clip_frames/fps, (i+1)*clip_frames/fps); a trailing partial clip is dropped) and\n"
        "write the 1024-d S3D feature of every clip to FEATURES/<video_id>.npy (float16 [n_clips, 1024]).\n"
        "Rerunning skips finished videos; failed videos are listed in FEATURES/failures.jsonl.\n"
        "Multi-GPU: torchrun --nproc-per-node G -m pipelines.extract MANIFEST -o FEATURES",
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="manifest JSONL, or a folder of videos")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="FEATURES", help="output folder")
    parser.add_argument("--shard", metavar="I/N", help="process only share I of N (0-based) of the videos, for job arrays")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="delete the folder's features first and extract everything again (needed to change fps, "
        "clip-frames, size, weights or precision of an existing folder)",
    )
    add_config_arguments(parser, ExtractConfig)
    return parser


class _Group:
    """The torchrun process group (gloo: only barriers and a few counters travel), or a no-op."""

    def __init__(self, active: bool):
        self.active = active

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def total(self, summary: ExtractSummary) -> ExtractSummary:
        if not self.active:
            return summary
        counts = torch.tensor([summary.ok, summary.skipped, summary.failed, summary.clips], dtype=torch.float64)
        torch.distributed.all_reduce(counts)
        seconds = torch.tensor([summary.seconds], dtype=torch.float64)
        torch.distributed.all_reduce(seconds, op=torch.distributed.ReduceOp.MAX)
        ok, skipped, failed, clips = (int(v) for v in counts.tolist())
        return ExtractSummary(ok, skipped, failed, clips, float(seconds.item()))


@contextlib.contextmanager
def process_group(active: bool) -> Iterator[_Group]:
    """Join the launcher's process group for the run (``active``: launched by torchrun)."""
    if active and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
        try:
            yield _Group(True)
        finally:
            torch.distributed.destroy_process_group()
    else:
        yield _Group(active)


def _merge_failures(out: Path, count: int) -> None:
    """Concatenate the ranks' failure files into failures.jsonl (after the final barrier)."""
    parts = [out / failures_name(i, count) for i in range(count)]
    lines = [line for part in parts if part.exists() for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]
    atomic_write_text(out / failures_name(), "".join(line + "\n" for line in lines))
    for part in parts:
        part.unlink(missing_ok=True)


def _remove_stale_failures(out: Path, count: int) -> None:
    """Failure files of an earlier attempt split another way describe nothing current."""
    keep = {failures_name(i, count) for i in range(count)}
    for path in out.glob("failures*.jsonl"):
        if path.name not in keep:
            path.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(ExtractConfig, args)
    env = dist_env()
    job_shard = parse_shard(args.shard)
    shard = combined_shard(job_shard, env)
    # torchrun gives its ranks a rendezvous (MASTER_ADDR); SLURM tasks without it just take their share
    coordinated = env.is_distributed and "MASTER_ADDR" in os.environ
    merged = coordinated and job_shard.count == 1  # the ranks together cover every video
    if args.overwrite and shard.count > 1 and not merged:
        raise ConfigError("--overwrite needs one run over all the videos (alone, or torchrun without --shard): "
                          "other shards' writers would not see it; delete the folder first instead")
    entries = read_manifest(args.manifest)
    out = prepare_output_dir(args.out)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", env.world_size))  # ranks sharing this machine
    runtime = resolve_runtime(cfg, device, precision, local_processes)
    if cfg.decoder == "cuda":
        if device.type != "cuda":
            raise ConfigError("--decoder cuda needs the model on a CUDA device (--device cuda, or auto on a GPU machine)")
        check_cuda_decoder(runtime.gpu)
    model, weights = build_s3d(cfg.weights, cfg.init_seed)
    meta = extraction_meta(cfg, weights, device, precision, args.manifest)
    failures_file = out / failures_name(shard.index, shard.count)

    with process_group(coordinated) as group:
        if env.is_main:
            if args.overwrite:
                removed = remove_features(out)
                if removed:
                    log.warning("--overwrite: removed %d feature files from %s", removed, out)
            claim_features_dir(out, meta, overwrite=args.overwrite)
            if shard.index == 0:
                cfgmod.save(cfg, out / "config.yaml")
                _remove_stale_failures(out, shard.count)
        group.barrier()
        if not env.is_main:
            claim_features_dir(out, meta)

        mine = shard.take(entries, key=lambda e: e.video_id)
        log.info(
            "%d of %d videos for shard %s on %s (%s, batch %d, %d decoding workers, decoder %s)",
            len(mine), len(entries), shard, device, precision, runtime.batch_size, runtime.workers, cfg.decoder,
        )
        encoder = ClipEncoder(model, device, precision)
        with FailureLog(failures_file) as failures:
            summary = extract_features(mine, out, cfg, encoder, runtime, failures, progress=progress if env.is_main else None)
        group.barrier()
        total = group.total(summary)
        if merged and env.is_main:
            _merge_failures(out, shard.count)

    reasons = out / (failures_name() if merged else failures_file.name)
    if group.active:
        log.info("rank %d: %s", env.rank, summary.line(failures_file.name))
    if env.is_main or not group.active:
        print(total.line(reasons.name))
    if not mine and not group.active:
        log.warning("shard %s has no videos (%d in the manifest)", shard, len(entries))
        return 0
    if total.ok + total.skipped == 0:
        raise StageError(f"no video could be processed ({total.failed} failed; reasons in {reasons})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("videobert extract", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
