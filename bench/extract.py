"""Benchmark of the extract stage, in parts, so that a slow machine can be diagnosed from one command.

    python bench/extract.py                                   # a CPU box, size 112 (a few minutes on 2 cores)
    python bench/extract.py --size 224 --videos 32 --seconds 60   # a GPU machine (H100 targets at 30x224x224)

Printed, each with the baseline measured beside it in the same run:

* the machine: CPU model and instruction set (AVX2, AVX-512, ...), whether it computes bf16
  natively, the precision ``--precision auto`` picks, torch threads and decoding workers;
* model-only clips/s for each path and precision — torchvision eager fp32 (contiguous, and in the
  channels-last 3-D layout) against ours (:class:`videobert.features.ClipEncoder`: uint8 clips
  normalised on the device; on a CPU the rewrite of :mod:`videobert.features.s3d_cpu`, on a GPU
  channels-last 3-D) in fp32 and in bf16 (on a CPU only where bf16 is native: emulated bf16 is
  many times slower). Target on one H100 at 30x224x224: ours >= 2x eager;
* decode-only frames/s — the DataLoader of decoding workers over generated H.264 videos
  (--source-size, --source-fps), for each decoder available (``videobert extract --decoder``):
  ``cpu`` (an ffmpeg process per video) and ``torchcodec`` (FFmpeg's libraries in the worker) on the
  CPU cores; on a GPU also ``torchcodec-cuda`` (NVDEC into CUDA tensors, in the main process) and
  ``cuda`` (ffmpeg's NVDEC + scale_cuda, where the ffmpeg has CUDA); frames are the ones delivered
  (at --fps, size x size), and ``extract``'s default decoder is marked;
* end-to-end clips/s — ``videobert.features.extract.extract_features`` from the mp4 files to .npy
  files in a temporary folder, at the precision ``auto`` picks, for each decoder.
  Target: >= 85% of the slower of model-only (ours) and decode-only (in clips/s).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models.video import s3d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videobert.errors import ConfigError  # noqa: E402
from videobert.features.decode import DecodeSettings, clip_loader  # noqa: E402
from videobert.features.extract import extract_features, resolve_runtime  # noqa: E402
from videobert.features.s3d import KINETICS_MEAN, KINETICS_STD, ClipEncoder, build_s3d  # noqa: E402
from videobert.features.stage import ExtractConfig, extract_precision  # noqa: E402
from videobert.manifest import VideoEntry  # noqa: E402
from videobert.features.decode import check_decoder  # noqa: E402
from videobert.features.torchcodec_reader import check_torchcodec  # noqa: E402
from videobert.media import probe, run_ffmpeg  # noqa: E402
from videobert.runtime import cpu_name, resolve_device  # noqa: E402
from videobert.store import atomic_save_npy  # noqa: E402


def machine(device: torch.device) -> str:
    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU used"
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores (torch threads {torch.get_num_threads()}); {gpu}; "
            f"torch {torch.__version__}")


def calibration() -> str:
    """A float32 GEMM rate: on a shared machine, tells a slow figure from a busy machine."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    began = time.perf_counter()
    for _ in range(4):
        a @ b
    return f"CPU fp32 GEMM {4 * 2 * 2048**3 / (time.perf_counter() - began) / 1e9:.0f} GFLOP/s"


def make_videos(folder: Path, count: int, seconds: float, size: str, fps: int) -> list[Path]:
    """``count`` H.264 videos (yuv420p, crf 23) of moving test patterns with noise, cached by name."""
    folder.mkdir(parents=True, exist_ok=True)
    videos = []
    for i in range(count):
        path = folder / f"bench_{size}_{fps}fps_{seconds:g}s_{i:03d}.mp4"
        if not path.exists():
            source = f"testsrc2=size={size}:rate={fps},noise=alls={8 + i % 8}:allf=t"
            tmp = path.with_name("." + path.name)
            run_ffmpeg(["-y", "-f", "lavfi", "-i", source, "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast",
                        "-crf", "23", "-pix_fmt", "yuv420p", str(tmp)], what=str(path))
            tmp.rename(path)
        videos.append(path)
    return videos


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(step, items: int, device: torch.device, min_seconds: float, warmup: int = 1) -> float:
    """Items per second of ``step()`` (which handles ``items`` items), after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    sync(device)
    calls, began = 0, time.perf_counter()
    while True:
        step()
        calls += 1
        sync(device)
        elapsed = time.perf_counter() - began
        if elapsed >= min_seconds and calls >= 2:
            return calls * items / elapsed


def model_only(args, device: torch.device) -> dict[str, float]:
    """Clips/s of each model path on random clips already on the device (the best of --rounds
    alternating measurements, so that a busy machine penalises all alike); the key is the label."""
    generator = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (args.batch_size, args.clip_frames, args.size, args.size, 3), dtype=torch.uint8,
                          generator=generator).to(device)
    mean = torch.tensor(KINETICS_MEAN, device=device).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD, device=device).view(1, 3, 1, 1, 1)
    normalised = ((clips.permute(0, 4, 1, 2, 3).float() / 255 - mean) / std).contiguous()
    eager_model = s3d().eval().to(device)
    last_model = s3d().eval().to(device, memory_format=torch.channels_last_3d)
    normalised_last = normalised.contiguous(memory_format=torch.channels_last_3d)
    tuned = torch.backends.cudnn.benchmark  # ours turns cuDNN autotuning on; plain eager runs without it

    def eager(model, frames):
        def step():
            with torch.no_grad():
                model.features(frames).mean(dim=(2, 3, 4)).cpu()
        return step

    paths = {"torchvision eager fp32": eager(eager_model, normalised),
             "torchvision eager fp32, channels-last 3-D": eager(last_model, normalised_last)}
    precisions = ["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32", "bf16"]
    for precision in precisions:
        if device.type == "cpu" and precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            print("ours bf16: not measured (this CPU has no native bf16; emulated bf16 is many times slower than fp32)")
            continue
        encoder = ClipEncoder(build_s3d(None, 0)[0], device, precision)
        paths[f"ours {precision}"] = lambda encoder=encoder: encoder(clips)
    best = dict.fromkeys(paths, 0.0)
    for _ in range(args.rounds):
        for label, step in paths.items():
            torch.backends.cudnn.benchmark = tuned if label.startswith("ours") else False
            best[label] = max(best[label], rate(step, args.batch_size, device, args.model_seconds / args.rounds / len(paths)))
    torch.backends.cudnn.benchmark = tuned
    return best


def decode_only(args, videos: list[Path], cfg: ExtractConfig, runtime, decoder: str) -> tuple[float, int, float]:
    """(frames/s delivered, frames, seconds) of the decoding workers alone."""
    settings = DecodeSettings(cfg.fps, cfg.clip_frames, cfg.size, decoder, runtime.decode_threads, runtime.gpu,
                              chunk_clips=max(1, min(runtime.batch_size, 4)))
    frames, began = 0, time.perf_counter()
    loader = clip_loader(videos, settings, runtime.workers)
    for record, _, number, payload, _ in loader:
        if record == "clips":
            frames += len(payload) * args.clip_frames
        elif number < 0:
            raise RuntimeError(payload)
    seconds = time.perf_counter() - began
    return frames / seconds, frames, seconds


def end_to_end(args, videos: list[Path], cfg: ExtractConfig, runtime, encoder: ClipEncoder) -> tuple[float, int, float]:
    entries = [VideoEntry(p.stem, p) for p in videos]
    clips, began = 0, time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        for video in extract_features(entries, encoder, runtime, cfg.fps, cfg.clip_frames, cfg.size, cfg.decoder):
            if video.error is not None:
                raise RuntimeError(f"{video.entry.video_id} failed: {video.error}")
            atomic_save_npy(Path(out) / f"{video.entry.video_id}.npy", video.features)
            clips += len(video.features)
        seconds = time.perf_counter() - began
    return clips / seconds, clips, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--size", type=int, help="frame size (default: 224 on CUDA, 112 on CPU)")
    parser.add_argument("--fps", type=int, default=20)
    parser.add_argument("--clip-frames", type=int, default=30)
    parser.add_argument("--batch-size", type=int, help="clips per model call (default: the extract stage's)")
    parser.add_argument("--workers", type=int, help="decoding workers (default: the extract stage's)")
    parser.add_argument("--decoders", default="all",
                        help="comma-separated decoders to benchmark (cpu, torchcodec, torchcodec-cuda, cuda), or all available")
    parser.add_argument("--videos", type=int, help="generated videos (default: 32 on CUDA, 4 on CPU)")
    parser.add_argument("--seconds", type=float, help="length of each generated video (default: 60 on CUDA, 24 on CPU)")
    parser.add_argument("--source-size", default="640x360", help="generated videos' frame size (360p)")
    parser.add_argument("--source-fps", type=int, default=30)
    parser.add_argument("--model-seconds", type=float, default=9.0, help="time spent measuring each model path")
    parser.add_argument("--rounds", type=int, default=3, help="alternating model-only and decode-only measurements (best kept)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "videobert-bench-videos",
                        help="folder of the generated videos (reused between runs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    device = resolve_device(args.device)
    precision = extract_precision(args.precision, device)
    on_gpu = device.type == "cuda"
    args.size = args.size or (224 if on_gpu else 112)
    args.videos = args.videos or (32 if on_gpu else 4)
    args.seconds = args.seconds or (60.0 if on_gpu else 24.0)
    cfg = ExtractConfig(fps=args.fps, clip_frames=args.clip_frames, size=args.size, batch_size=args.batch_size,
                        workers=args.workers, device=args.device, precision=args.precision)
    runtime = resolve_runtime(device, precision, cfg.batch_size, cfg.workers)
    args.batch_size = runtime.batch_size
    everything = ["cpu", "torchcodec", "torchcodec-cuda", "cuda"] if on_gpu else ["cpu", "torchcodec"]
    decoders = args.decoders.split(",") if args.decoders != "all" else everything
    for decoder in list(decoders):
        try:
            check_decoder(decoder, device, runtime.gpu)
            refusal = check_torchcodec(f"cuda:{runtime.gpu}") if decoder == "torchcodec-cuda" else None
            if refusal:  # it would decode on the CPU: not a figure of NVDEC
                raise ConfigError(refusal)
        except ConfigError as exc:
            print(f"{decoder} decoder not benchmarked: {exc}")
            decoders.remove(decoder)
    default = ExtractConfig().decoder

    print(f"# extract benchmark, {datetime.date.today()}")
    print(f"machine: {machine(device)}")
    print(f"instruction set: {torch.backends.cpu.get_cpu_capability()}; native bf16: "
          f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}; --precision {args.precision} runs {precision}")
    print(f"before: {calibration()}")
    print(f"settings: {args.clip_frames}x{args.size}x{args.size} clips at {args.fps} fps, batch {runtime.batch_size}, "
          f"precision {precision}, {runtime.workers} decoding workers x {runtime.decode_threads} decoding threads")

    rates = model_only(args, device)
    eager = rates["torchvision eager fp32"]
    for label, value in rates.items():
        print(f"model-only (best of {args.rounds}) {label}: {value:.2f} clips/s ({value / eager:.2f}x eager fp32)")
    ours = rates[f"ours {precision}"]

    began = time.perf_counter()
    videos = make_videos(args.cache, args.videos, args.seconds, args.source_size, args.source_fps)
    info = probe(videos[0])
    print(f"videos: {len(videos)} x {args.seconds:g} s H.264 {info.width}x{info.height} at {info.fps:g} fps "
          f"({args.cache}, ready in {time.perf_counter() - began:.0f} s)")

    # the decoders in turn, --rounds times, the best kept: a busy machine penalises all alike
    decode_runs = {}
    for _ in range(args.rounds):
        for decoder in decoders:
            run = decode_only(args, videos, cfg, runtime, decoder)
            decode_runs[decoder] = max(decode_runs.get(decoder, run), run)
    decode_rates = {}
    for decoder, (fps_out, frames, seconds) in decode_runs.items():
        decode_rates[decoder] = fps_out
        mark = ", extract's default" if decoder == default else ""
        print(f"decode-only ({decoder}{mark}, best of {args.rounds}): {fps_out:.0f} frames/s at {args.size}x{args.size} "
              f"({fps_out / args.clip_frames:.1f} clips/s; source frames decoded {fps_out * args.source_fps / args.fps:.0f}/s; "
              f"{frames} frames in {seconds:.1f} s)")

    encoder = ClipEncoder(build_s3d(None, 0)[0], device, precision)
    for decoder in decoders:
        cfg.decoder = decoder
        clips_per_s, clips, seconds = end_to_end(args, videos, cfg, runtime, encoder)
        bound = min(ours, decode_rates[decoder] / args.clip_frames)
        print(f"end-to-end ({decoder} decoder): {clips_per_s:.1f} clips/s ({clips} clips in {seconds:.1f} s) = "
              f"{100 * clips_per_s / bound:.0f}% of min(model-only, decode-only) = {bound:.1f} clips/s")
    print(f"after: {calibration()}")


if __name__ == "__main__":
    main()
