"""Every GPU figure README.md and BENCHMARKS.md promise, each beside its baseline measured in the
same run, from one command — sized to finish in under ten minutes on one GPU (an H100):

    python bench/gpu.py            # on the GPU machine: the sizes of BENCHMARKS.md's GPU commands, trimmed to the slot
    python bench/gpu.py --small    # anywhere, CPU included: tiny sizes through the same scripts (a test runs it)

It checks the machine first — a CUDA device, faiss with GPU support, torchcodec's NVDEC decoder,
ffmpeg's NVDEC — and then runs the benchmark scripts that measure each part (it adds no
measurement of its own), each under a time limit:

* ``bench/extract.py`` — S3D clips/s in fp32, bf16, fp16 and channels-last 3-D against
  torchvision's eager S3D; decode-only frames/s of the CPU decoding processes (ffmpeg, torchcodec)
  against NVDEC (torchcodec-cuda, and ffmpeg's where it has CUDA); end-to-end extract clips/s;
* ``bench/pretrain.py`` — pretraining tokens/s and MFU for the base and large presets against
  Hugging Face ``BertForPreTraining``;
* ``bench/vocab.py`` twice — hierarchical k-means and tokenize on faiss's GPU, then the same
  settings with ``--device cpu`` (the CPU baseline, the same library);
* ``bench/search.py`` — the dual encoder's index build and query latency, where the script exists.

It ends with what it measured and, for everything else, "not measured" and why. It exits 1 only
when a part that could run failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Each part: the arguments on the GPU, and --small's (tiny, for a 2-core CPU; the same code paths).
EXTRACT = {
    "gpu": ["--size", "224", "--videos", "16", "--seconds", "30", "--rounds", "2", "--model-seconds", "12"],
    "small": ["--size", "112", "--fps", "10", "--clip-frames", "8", "--batch-size", "1", "--workers", "1",
              "--videos", "1", "--seconds", "2", "--source-size", "160x90", "--model-seconds", "1", "--rounds", "1"],
}
PRETRAIN = {
    "gpu": ["--presets", "base", "large", "--steps", "10"],
    "small": ["--presets", "tiny", "--batch", "2", "--seq", "32", "--steps", "1", "--warmup", "1"],
}
VOCAB = {
    "gpu": ["--points", "300000", "--tokenize-clips", "4000000", "--cpu-tokenize-clips", "1000000",
            "--flat-clips", "100000"],
    "small": ["--points", "3000", "--dim", "64", "--blobs", "60", "--k", "4", "--depth", "2", "--niter", "4",
              "--tokenize-clips", "20000", "--batch-clips", "8192", "--flat-clips", "1000", "--baseline-clips", "1000"],
}
# seconds each part may take at most (on the GPU 9.5 minutes in all, the checks in the rest; the
# parts are sized to take well under their limits)
LIMITS = {"gpu": {"extract": 210, "pretrain": 120, "vocab gpu": 90, "vocab cpu": 90, "search": 60},
          "small": {"extract": 120, "pretrain": 60, "vocab gpu": 60, "vocab cpu": 60, "search": 60}}


def environment() -> dict[str, str | None]:
    """What the machine can measure: for each capability, None where it is usable, else why not."""
    import torch

    found: dict[str, str | None] = {}
    cuda = torch.cuda.is_available()
    found["cuda"] = None if cuda else "no CUDA device visible to torch"
    print(f"torch {torch.__version__} (CUDA build {torch.version.cuda or 'none'}): "
          f"{torch.cuda.get_device_name(0) if cuda else found['cuda']}")

    try:
        import faiss

        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        found["faiss-gpu"] = None if gpus else "this faiss has no GPU support (pip install -e \".[gpu]\": faiss-gpu)"
        print(f"faiss {faiss.__version__}: {gpus} GPU(s)")
    except ImportError as exc:
        found["faiss-gpu"] = f"faiss not importable ({exc})"
        print(found["faiss-gpu"])

    from videobert.errors import ConfigError
    from videobert.features.torchcodec_reader import check_torchcodec

    try:
        refusal = check_torchcodec("cuda:0") if cuda else "no CUDA device"
        found["torchcodec-cuda"] = refusal and f"torchcodec's NVDEC decoder is not usable: {refusal}"
    except ConfigError as exc:
        found["torchcodec-cuda"] = str(exc)
    print(f"torchcodec NVDEC: {found['torchcodec-cuda'] or 'usable'}")

    from videobert.media import check_cuda_decoder

    try:
        if not cuda:
            raise ConfigError("no CUDA device")
        check_cuda_decoder(0)
        found["ffmpeg-cuda"] = None
    except ConfigError as exc:
        found["ffmpeg-cuda"] = f"ffmpeg's NVDEC decoder is not usable: {exc}"
    print(f"ffmpeg NVDEC: {found['ffmpeg-cuda'] or 'usable'}")
    return found


def run_part(name: str, command: list[str], limit: float) -> str | None:
    """Run a benchmark script, its output passed through as it comes; None if it finished, else why not."""
    print(f"\n## {name}: {' '.join(command)}  (limit {limit:.0f} s)", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    began = time.perf_counter()
    try:
        code = subprocess.run([sys.executable, *command], cwd=REPO, env=env, timeout=limit).returncode
    except subprocess.TimeoutExpired:
        return f"stopped after its limit of {limit:.0f} s"
    print(f"({name}: {time.perf_counter() - began:.0f} s)", flush=True)
    return None if code == 0 else f"exited {code}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="tiny sizes, for a CPU (the same scripts and code paths)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["extract", "pretrain", "vocab", "search"],
                        help="parts not to run")
    args = parser.parse_args()
    mode = "small" if args.small else "gpu"
    limits = LIMITS[mode]
    began = time.perf_counter()
    print(f"# GPU benchmarks ({'small sizes' if args.small else 'full sizes'}), {time.strftime('%Y-%m-%d')}")
    found = environment()
    on_gpu = found["cuda"] is None
    if not on_gpu and not args.small:
        print("no GPU: the full sizes would take hours on a CPU; rerun with --small for the same scripts at tiny sizes")

    measured: list[str] = []
    missing: list[str] = []

    def part(name: str, command: list[str], what: str) -> None:
        failure = run_part(name, command, limits[name])
        (missing.append(f"{what}: {name} {failure}") if failure else measured.append(what))

    if "extract" not in args.skip:
        if on_gpu or args.small:
            part("extract", ["bench/extract.py", *EXTRACT[mode]],
                 "S3D clips/s against torchvision eager; decode frames/s; end-to-end extract clips/s")
        for decoder in ("torchcodec-cuda", "ffmpeg-cuda"):
            if found[decoder]:
                missing.append(f"decode frames/s with {decoder.replace('ffmpeg-cuda', 'ffmpeg NVDEC')}: {found[decoder]}")
        if not on_gpu:
            missing.append("S3D fp16 and GPU channels-last clips/s: no CUDA device (the CPU's paths were measured)")
    if "pretrain" not in args.skip:
        if on_gpu or args.small:
            part("pretrain", ["bench/pretrain.py", *PRETRAIN[mode]], "pretraining tokens/s against Hugging Face BERT")
        if not on_gpu:
            missing.append("pretraining MFU and the base and large presets at 128 x 256: no CUDA device")
    if "vocab" not in args.skip:
        if found["faiss-gpu"] is None and on_gpu:
            part("vocab gpu", ["bench/vocab.py", *VOCAB[mode], "--device", "cuda"],
                 "hierarchical k-means and tokenize on faiss's GPU")
        else:
            missing.append(f"hierarchical k-means and tokenize on the GPU: {found['faiss-gpu'] or found['cuda']}")
        part("vocab cpu", ["bench/vocab.py", *VOCAB[mode], "--device", "cpu"],
             "hierarchical k-means and tokenize on faiss's CPU (the baseline)")
    if "search" not in args.skip:
        script = REPO / "bench" / "search.py"
        if not script.exists():
            missing.append("dual encoder index build and query latency: bench/search.py not present")
        else:
            usage = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True,
                                   env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
            if args.small and "--small" not in usage:
                missing.append("dual encoder index build and query latency: bench/search.py has no --small sizes")
            else:
                part("search", ["bench/search.py", *(["--small"] if args.small else [])],
                     "dual encoder index build and query latency")

    print(f"\n# summary ({time.perf_counter() - began:.0f} s)")
    for what in measured:
        print(f"measured: {what}")
    for what in missing:
        print(f"not measured: {what}")
    failed = [m for m in missing if " stopped after " in m or " exited " in m]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
