"""Visual words per second from a model folder, beside the stage pipeline on the same videos.

    python bench/visual_words.py --model runs/demo/model --videos runs/demo/synth/videos [--limit 16]

Three ways from video files to visual words, all with the model folder's feature settings
(features.json) and codebook, on the same videos, one after another on this machine:

* ``pipe.visual_words(path)``, one call per video (what a notebook does);
* ``pipe.iter_visual_words(entries)``, the videos streamed through one extraction (what
  ``videobert index`` does);
* the stage pipeline: ``videobert extract`` then ``videobert tokenize`` (two commands, features
  written to disk between them) — the baseline.

Prints clips per second and seconds for each, and checks that all three give the same words.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videobert import VideoBERTPipeline  # noqa: E402
from videobert.manifest import read_manifest, write_manifest  # noqa: E402
from videobert.runtime import cpu_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("runs/demo/model"))
    parser.add_argument("--videos", type=Path, default=Path("runs/demo/synth/videos"), help="manifest or folder of videos")
    parser.add_argument("--limit", type=int, default=16, help="videos measured")
    parser.add_argument("--s3d-weights", type=Path)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    entries = read_manifest(args.videos)[: args.limit]
    pipe = VideoBERTPipeline.from_pretrained(args.model, s3d_weights=args.s3d_weights, device=args.device)
    settings = pipe.settings
    print(f"machine: {cpu_name()}; device {pipe.loaded.device}; {len(entries)} videos; clips of "
          f"{settings['clip_frames']} frames at {settings['fps']} fps, {settings['size']} px, {settings['precision']}")
    pipe.visual_words(entries[0].video)  # warm-up: S3D built, kernels chosen

    began = time.perf_counter()
    single = {e.video_id: pipe.visual_words(e.video) for e in entries}
    single_seconds = time.perf_counter() - began
    began = time.perf_counter()
    streamed = {entry.video_id: words for entry, words, error in pipe.iter_visual_words(entries) if error is None}
    stream_seconds = time.perf_counter() - began

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_manifest(tmp / "manifest.jsonl", entries)
        common = ["--device", str(pipe.loaded.device.type), "-q"]
        extract = [sys.executable, "-m", "pipelines.cli", "extract", str(tmp / "manifest.jsonl"), "-o", str(tmp / "features"),
                   "--fps", str(settings["fps"]), "--clip-frames", str(settings["clip_frames"]), "--size", str(settings["size"]),
                   "--precision", str(settings["precision"]), "--init-seed", str(settings.get("init_seed", 0)), *common]
        if args.s3d_weights:
            extract += ["--weights", str(args.s3d_weights)]
        tokenize = [sys.executable, "-m", "pipelines.cli", "tokenize", str(tmp / "features"), "--vocab",
                    str(args.model / "visual_vocab"), "-o", str(tmp / "tokens"), *common]
        env_path = str(Path(__file__).resolve().parents[1])
        began = time.perf_counter()
        for command in (extract, tokenize):
            subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": env_path, "VIDEOBERT_PROGRESS": "0"},
                           capture_output=True)
        stage_seconds = time.perf_counter() - began
        staged = {e.video_id: np.load(tmp / "tokens" / f"{e.video_id}.npy") for e in entries}

    clips = sum(len(w) for w in staged.values())
    same = all(np.array_equal(single[v], staged[v]) and np.array_equal(streamed[v], staged[v]) for v in staged)
    print(f"\n{'path':<52}{'seconds':>9}{'clips/s':>10}")
    for name, seconds in (("pipe.visual_words(path), one call per video", single_seconds),
                          ("pipe.iter_visual_words(entries), streamed", stream_seconds),
                          ("baseline: videobert extract + videobert tokenize", stage_seconds)):
        print(f"{name:<52}{seconds:>9.1f}{clips / seconds:>10.1f}")
    print(f"\n{clips} clips; the three give the same visual words: {same}")


if __name__ == "__main__":
    main()
