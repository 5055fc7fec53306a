"""Do fp32 and bf16 S3D features give a model the same visual words?

    python bench/precision_words.py --model runs/demo/model --videos runs/demo/synth/videos [--limit 24]

The model folder's videos are decoded once with its feature settings (features.json); S3D encodes
every clip in fp32 and in bf16 (autocast, as extract runs it), and the model's codebook tokenizes
both. Prints the share of clips whose word differs and the cosine between the two features. A model whose words differ keeps
its recorded precision for new videos (``VideoBERTPipeline``, ``videobert index``); one whose words
never differ could use either. bf16 on a CPU without native bf16 is emulated and slow: expect
minutes per video there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videobert import VideoBERTPipeline  # noqa: E402
from videobert.features.decode import DecodeSettings, clip_loader  # noqa: E402
from videobert.features.s3d import ClipEncoder, build_s3d  # noqa: E402
from videobert.manifest import read_manifest  # noqa: E402
from videobert.runtime import cpu_bf16_native, cpu_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("runs/demo/model"))
    parser.add_argument("--videos", type=Path, default=Path("runs/demo/synth/videos"), help="manifest or folder of videos")
    parser.add_argument("--limit", type=int, default=24, help="videos measured")
    parser.add_argument("--s3d-weights", type=Path)
    args = parser.parse_args()

    import torch

    entries = read_manifest(args.videos)[: args.limit]
    pipe = VideoBERTPipeline.from_pretrained(args.model, s3d_weights=args.s3d_weights, device="cpu")
    settings = pipe.settings
    model, _ = build_s3d(args.s3d_weights, int(settings.get("init_seed", 0)))
    encoders = {precision: ClipEncoder(model, torch.device("cpu"), precision) for precision in ("fp32", "bf16")}
    decode = DecodeSettings(int(settings["fps"]), int(settings["clip_frames"]), int(settings["size"]), "cpu", 1, 0,
                            chunk_clips=4)
    features = {"fp32": [], "bf16": []}
    seconds = {"fp32": 0.0, "bf16": 0.0}
    for record in clip_loader([e.video for e in entries], decode, 0, pin_memory=False):
        if record[0] != "clips":
            continue
        clips = record[3]
        for precision, encoder in encoders.items():
            began = time.perf_counter()
            features[precision].append(encoder(clips).astype(np.float16))
            seconds[precision] += time.perf_counter() - began
    fp32, bf16 = (np.concatenate(features[p]) for p in ("fp32", "bf16"))
    words32, words16 = pipe.codebook.tokenize(fp32), pipe.codebook.tokenize(bf16)
    a, b = fp32.astype(np.float32), bf16.astype(np.float32)
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    differ = words32 != words16
    print(f"machine: {cpu_name()} (native bf16: {cpu_bf16_native()}); model {args.model} (features recorded in "
          f"{settings.get('precision')}), codebook of {pipe.codebook.size} words; {len(entries)} videos, {len(fp32)} clips")
    print(f"S3D seconds: fp32 {seconds['fp32']:.1f}, bf16 {seconds['bf16']:.1f}")
    print(f"feature cosine fp32 vs bf16: mean {cosine.mean():.5f}, min {cosine.min():.5f}")
    print(f"clips whose visual word differs: {int(differ.sum())} of {len(differ)} ({differ.mean():.1%})")


if __name__ == "__main__":
    main()
