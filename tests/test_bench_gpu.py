"""bench/gpu.py, the one script of the GPU figures, run end to end at its small sizes on the CPU:
it checks the machine, runs every part through the same scripts a GPU run uses, prints each
figure beside its baseline, and says what it could not measure and why."""

import os
import subprocess
import sys

import torch

from tests.conftest import REPO


def test_gpu_benchmark_runs_every_part_at_small_sizes_and_says_what_it_could_not_measure():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "bench/gpu.py", "--small"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    out = result.stdout
    assert result.returncode == 0, (out + result.stderr)[-3000:]
    # the machine checked first
    for line in ("torch ", "faiss ", "torchcodec NVDEC: ", "ffmpeg NVDEC: "):
        assert f"\n{line}" in out, line
    # each figure beside the baseline measured in the same run
    assert "model-only (best of 1) torchvision eager fp32:" in out and "x eager fp32)" in out
    assert "decode-only (cpu, extract's default" in out and "decode-only (torchcodec" in out
    assert "end-to-end (cpu decoder):" in out and "% of min(model-only, decode-only)" in out
    assert "HF BertForPreTraining tiny (sdpa)" in out and "VideoBERT tiny" in out
    assert "build (faiss CPU)" in out and "baseline flat k-means" in out and "baseline exhaustive nearest word" in out
    summary = out[out.index("# summary"):]
    assert "measured: S3D clips/s against torchvision eager; decode frames/s; end-to-end extract clips/s" in summary
    assert "measured: pretraining tokens/s against Hugging Face BERT" in summary
    if (REPO / "bench" / "search.py").exists():
        assert "dual encoder index build and query latency" in summary
    else:
        assert "not measured: dual encoder index build and query latency: bench/search.py not present" in summary
    if not torch.cuda.is_available():
        assert "not measured: hierarchical k-means and tokenize on the GPU: " in summary
        assert "not measured: decode frames/s with torchcodec-cuda: " in summary
        assert "not measured: pretraining MFU and the base and large presets at 128 x 256: no CUDA device" in summary
