"""The extract stage: S3D clip features, weights, batching, bad inputs, resume and sharding."""

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from pipelines.extract import main
from tests.conftest import REPO
from tests.test_video import GRADIENT, lavfi_video
from videobert.errors import InputError
from videobert.features import (
    FEATURE_DIM,
    ClipEncoder,
    ExtractConfig,
    build_s3d,
    is_complete,
    list_videos,
    load_features,
    load_s3d_state,
)
from videobert.features.s3d_init import random_init_s3d
from videobert.store import read_failures
from videobert.media import ClipReader, run_ffmpeg

SIZE = 112
# The same batch size everywhere: a clip's feature is then bit-identical whichever run computed it.
# fp32: compared bit for bit with the in-memory model (bf16, where a CPU picks it, rounds by batch)
COMMON = ["--size", str(SIZE), "--batch-size", "2", "--workers", "1", "--precision", "fp32", "-q"]
VIDEOS = {"moving": 1, "life": 2, "gradient": 1}  # video id -> clips at 20 fps, 30 frames per clip


def cli_env():
    return {**os.environ, "PYTHONPATH": str(REPO), "VIDEOBERT_PROGRESS": "0"}


def extract(*args):
    """``pipelines.extract.main`` in this process: (exit code, stdout)."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main([str(a) for a in args])
    return code, stdout.getvalue()


def clips_of(path, count=None):
    with ClipReader(path, fps=20, clip_frames=30, size=SIZE) as reader:
        clips = [clip for _, clip in zip(range(count or 10**9), reader)]
    return np.stack(clips)


def npy_files(folder):
    return sorted(p.name for p in folder.glob("*.npy") if not p.name.startswith("."))


def assert_same_features(folder, reference, exact=True):
    assert npy_files(folder) == npy_files(reference)
    for name in npy_files(reference):
        ours, theirs = np.load(folder / name), np.load(reference / name)
        if exact:
            assert np.array_equal(ours, theirs), name
        else:  # within a float16 rounding step
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-3 * np.abs(theirs).max(), err_msg=name)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three short videos (4 clips in all): moving test pattern, cellular automaton, and a gradient
    with an audio track whose file name has a leading '-', spaces and unicode."""
    folder = tmp_path_factory.mktemp("extract_corpus")
    files = {
        "moving": lavfi_video(folder / "moving.mp4", 1.6, size=(96, 64)),
        "life": lavfi_video(folder / "life.mp4", 3.0, size=(64, 64), content="life=mold=10:ratio=0.5:seed=1"),
        "gradient": lavfi_video(folder / "-odd name ü.mp4", 1.5, size=(80, 48), content=GRADIENT, audio=True),
    }
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"video_id": k, "video": v.name}) + "\n" for k, v in files.items()))
    return manifest


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """An uninterrupted single-process run over the corpus: (folder, summary line)."""
    out = tmp_path_factory.mktemp("reference") / "features"
    code, stdout = extract(corpus, "-o", out, *COMMON)
    assert code == 0
    return out, stdout.strip()


def test_outputs_and_summary(reference, corpus):
    out, summary = reference
    assert re.fullmatch(r"3 videos ok, 0 failed \(see failures.jsonl\), 4 clips, [0-9.]+ clips/s", summary), summary
    assert list_videos(out) == sorted(VIDEOS)
    for video_id, clips in VIDEOS.items():
        features = load_features(out, video_id)
        assert features.dtype == np.float16 and features.shape == (clips, FEATURE_DIM)
        assert np.isfinite(features).all()
    meta = json.loads((out / "extract.json").read_text())
    assert meta["fps"] == 20 and meta["clip_frames"] == 30 and meta["clip_seconds"] == 1.5 and meta["size"] == SIZE
    assert meta["weights"] == "random-init" and meta["init_seed"] == 0
    assert meta["precision"] == "fp32" and meta["device"] == "cpu" and "S3D" in meta["model"]
    assert meta["manifest"] == str(corpus.resolve()) and "torch" in meta["versions"]
    assert (out / "failures.jsonl").read_text() == ""
    assert "size: 112" in (out / "config.yaml").read_text()


def test_rerun_skips_finished_videos(reference, corpus, tmp_path):
    out = tmp_path / "features"
    shutil.copytree(reference[0], out)
    stamps = {name: (out / name).stat().st_mtime_ns for name in npy_files(out)}
    code, stdout = extract(corpus, "-o", out, *COMMON)
    assert code == 0
    assert stdout.startswith("3 videos ok (3 already done), 0 failed (see failures.jsonl), 0 clips")
    assert stamps == {name: (out / name).stat().st_mtime_ns for name in npy_files(out)}


@pytest.fixture(scope="module")
def encoder():
    return ClipEncoder(build_s3d(None, 0)[0], torch.device("cpu"))


@pytest.fixture(scope="module")
def synth_clips(synth_corpus):
    """The first clip of two synthetic videos: uint8 [2, 30, 112, 112, 3]."""
    return np.concatenate([clips_of(synth_corpus / "videos" / f"synth_000{i}.mp4", 1) for i in range(2)])


def test_same_clip_decoded_twice_gives_identical_features(synth_corpus, encoder):
    video = synth_corpus / "videos" / "synth_0003.mp4"
    first, second = clips_of(video, 1), clips_of(video, 1)
    assert np.array_equal(first, second)
    features = encoder(np.concatenate([first, second]))
    assert np.array_equal(features[0], features[1])


def test_batched_equals_unbatched(synth_clips, encoder):
    batched = encoder(synth_clips)
    single = np.concatenate([encoder(clip[None]) for clip in synth_clips])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-4 * np.abs(single).max())


def test_random_init_features_stay_distinct_in_float16(synth_clips, encoder):
    ours = encoder(synth_clips).astype(np.float64)
    ours16 = ours.astype(np.float16).astype(np.float64)
    gap, gap16 = np.linalg.norm(ours[0] - ours[1]), np.linalg.norm(ours16[0] - ours16[1])
    assert gap > 0.05 * np.linalg.norm(ours[0])  # different videos, different features
    assert np.linalg.norm(ours16 - ours) < 1e-3 * np.linalg.norm(ours)
    assert abs(gap16 - gap) < 1e-2 * gap

    # The contrast: torchvision's default initialisation shrinks features below float16's normal
    # range, where storage keeps only a few significant bits.
    from torchvision.models.video import s3d

    torch.manual_seed(0)
    default = ClipEncoder(s3d(), torch.device("cpu"))(synth_clips).astype(np.float64)
    default16 = default.astype(np.float16).astype(np.float64)
    assert np.abs(default).max() < np.finfo(np.float16).tiny
    assert np.linalg.norm(default16 - default) > 1e-2 * np.linalg.norm(default)


def test_weights_from_torchvision_s3d_give_the_in_memory_models_features(corpus, tmp_path):
    from torchvision.models.video import s3d

    model = s3d()
    random_init_s3d(model, 7)  # any weights other than the default random init
    weights = tmp_path / "s3d.pth"
    torch.save(model.state_dict(), weights)
    manifest = tmp_path / "one.jsonl"
    manifest.write_text(json.dumps({"video_id": "life", "video": str(corpus.parent / "life.mp4")}) + "\n")
    code, _ = extract(manifest, "-o", tmp_path / "out", "--weights", weights, *COMMON)
    assert code == 0
    expected = ClipEncoder(model, torch.device("cpu"))(clips_of(corpus.parent / "life.mp4"))
    assert np.array_equal(load_features(tmp_path / "out", "life"), expected.astype(np.float16))
    meta = json.loads((tmp_path / "out" / "extract.json").read_text())
    assert meta["weights"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_cpu_rewrite_computes_torchvision_s3d():
    """S3D prepared for the CPU (batch norms folded into the convolutions, channels-last) against
    torchvision's S3D, with batch-norm statistics that are not the identity."""
    from torchvision.models.video import s3d

    from videobert.features.s3d_cpu import for_cpu

    torch.manual_seed(0)
    model = s3d().eval()
    random_init_s3d(model, 3)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    x = torch.randn(2, 3, 15, 112, 112)
    with torch.inference_mode():
        expected = model.features(x).mean(dim=(2, 3, 4))
        got = for_cpu(model).features(x.contiguous(memory_format=torch.channels_last_3d)).mean(dim=(2, 3, 4))
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_weights_holding_pickled_objects_are_refused(corpus, tmp_path):
    marker = tmp_path / "code-ran"
    weights = tmp_path / "evil.pth"
    torch.save({"features.0.0.0.weight": torch.zeros(1), "payload": _Payload(str(marker))}, weights)
    with pytest.raises(InputError, match="refused"):
        load_s3d_state(weights)
    code, _ = extract(corpus, "-o", tmp_path / "out", "--weights", weights, *COMMON)
    assert code == 1 and not marker.exists()
    other = tmp_path / "linear.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(InputError, match="not a torchvision S3D state dict"):
        build_s3d(other)


def test_bad_inputs_are_recorded_and_the_others_processed(corpus, tmp_path, capsys):
    media = tmp_path / "media"
    media.mkdir()
    (media / "empty.mp4").write_bytes(b"")
    whole = lavfi_video(media / "whole.mp4", 4.0, output_args=["-movflags", "+faststart"])
    (media / "truncated.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (media / "text.mp4").write_text("not a video at all\n")
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "sine=duration=3", "-c:a", "aac", str(media / "audio.mp4")], "audio")
    lavfi_video(media / "short.mp4", 1.0)
    reasons = {
        "empty": "empty file", "truncated": "truncated or corrupt", "text": "not a readable video",
        "audio": "audio-only", "missing": "file not found", "short": "shorter than one clip",
    }
    lines = [{"video_id": "good", "video": str(corpus.parent / "moving.mp4")}]
    lines += [{"video_id": name, "video": f"media/{name}.mp4"} for name in reasons]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, stdout = extract(manifest, "-o", tmp_path / "out", *COMMON)
    assert code == 0
    assert stdout.startswith("1 videos ok, 6 failed (see failures.jsonl), 1 clips")
    assert npy_files(tmp_path / "out") == ["good.npy"]
    records = {r["id"]: r["reason"] for r in read_failures(tmp_path / "out")}
    assert set(records) == set(reasons)
    for name, reason in reasons.items():
        assert reason in records[name] and name in records[name], records[name]

    bad_only = tmp_path / "bad.jsonl"
    bad_only.write_text("".join(json.dumps(line) + "\n" for line in lines[1:]))
    capsys.readouterr()
    code, _ = extract(bad_only, "-o", tmp_path / "out2", *COMMON)
    assert code == 1
    assert "no video could be processed (6 failed" in capsys.readouterr().err


def _live_processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if text.encode() in handle.read():
                    found.append(int(pid))
        except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
            continue
    return found


def test_kill_and_resume_gives_the_same_files(reference, corpus, tmp_path):
    out = tmp_path / "killed"
    for _attempt in range(3):  # on a loaded machine the poll below can wake after the last video: try again
        shutil.rmtree(out, ignore_errors=True)
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "extract", str(corpus), "-o", str(out), *COMMON],
            env=cli_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while not npy_files(out) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
        done = npy_files(out)
        if len(done) < len(VIDEOS):
            break
    assert 1 <= len(done) < len(VIDEOS), "the kill should land between two videos' outputs"
    assert all(is_complete(out / name) for name in done)  # no partial .npy, ever
    deadline = time.monotonic() + 10
    while _live_processes_mentioning(str(corpus.parent)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _live_processes_mentioning(str(corpus.parent)), "decoding workers or ffmpeg outlived the run"

    code, stdout = extract(corpus, "-o", out, *COMMON)
    assert code == 0 and f"({len(done)} already done)" in stdout
    assert_same_features(out, reference[0])
    assert not [p for p in out.iterdir() if ".tmp." in p.name]


def test_two_shard_processes_write_disjoint_complete_outputs(reference, corpus, tmp_path):
    out = tmp_path / "sharded"
    runs = [
        subprocess.Popen([sys.executable, "-m", "pipelines.cli", "extract", str(corpus), "-o", str(out), "--shard", f"{i}/2",
                          *COMMON, "--workers", "0"],
                         env=cli_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    for code, _, stderr in results:
        assert code == 0, stderr
    # video ids sorted (gradient, life, moving) are dealt round-robin
    assert results[0][1].startswith("2 videos ok, 0 failed (see failures.shard-00000-of-00002.jsonl), 2 clips")
    assert results[1][1].startswith("1 videos ok, 0 failed (see failures.shard-00001-of-00002.jsonl), 2 clips")
    assert_same_features(out, reference[0])
    assert sorted(p.name for p in out.glob("failures*")) == [
        "failures.shard-00000-of-00002.jsonl", "failures.shard-00001-of-00002.jsonl"]


def test_torchrun_ranks_share_the_videos(reference, corpus, tmp_path):
    out = tmp_path / "torchrun"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "pipelines.extract", str(corpus), "-o", str(out), *COMMON, "--workers", "0"],
        env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^3 videos ok, 0 failed \(see failures.jsonl\), 4 clips", result.stdout, re.M), result.stdout
    assert result.stdout.count("videos ok") == 1  # rank 0 reports the total
    # torchrun gives each rank one CPU thread, which rounds some sums differently
    assert_same_features(out, reference[0], exact=False)
    assert sorted(p.name for p in out.glob("failures*")) == ["failures.jsonl"]


def test_changed_settings_are_refused_unless_overwrite(reference, corpus, tmp_path, capsys):
    out = tmp_path / "features"
    shutil.copytree(reference[0], out)
    capsys.readouterr()
    assert extract(corpus, "-o", out, *COMMON, "--fps", "10")[0] == 2
    assert "holds features made with fps=20 but this run has fps=10" in capsys.readouterr().err
    manifest = tmp_path / "one.jsonl"
    manifest.write_text(json.dumps({"video_id": "life", "video": str(corpus.parent / "life.mp4")}) + "\n")
    code, stdout = extract(manifest, "-o", out, *COMMON, "--fps", "10", "--overwrite")
    assert code == 0 and stdout.startswith("1 videos ok, 0 failed")
    # 3 s at 10 fps: one clip of 30 frames; the other videos' features at 20 fps are gone
    assert npy_files(out) == ["life.npy"] and load_features(out, "life").shape == (1, FEATURE_DIM)
    assert json.loads((out / "extract.json").read_text())["fps"] == 10


@pytest.mark.parametrize("flags, message", [
    (["--size", "64"], "size: need at least 112 pixels"),
    (["--clip-frames", "4"], "clip_frames: S3D needs at least 8"),
    (["--shard", "2/2"], "need 0 <= I < N"),
    (["--shard", "0/2", "--overwrite"], "--overwrite needs one run over all the videos"),
])
def test_invalid_settings_exit_2(corpus, tmp_path, capsys, flags, message):
    assert extract(corpus, "-o", tmp_path / "out", *flags)[0] == 2
    assert message in capsys.readouterr().err


def test_config_defaults_are_the_papers():
    cfg = ExtractConfig()
    assert (cfg.fps, cfg.clip_frames, cfg.clip_seconds, cfg.size) == (20, 30, 1.5, 224)


@pytest.mark.gpu
def test_cuda_reduced_precision_features_match_cpu_fp32(synth_corpus):
    clips = np.concatenate([clips_of(synth_corpus / "videos" / f"synth_000{i}.mp4", 2) for i in range(2)])
    model = build_s3d(None, 0)[0]
    cpu = ClipEncoder(model, torch.device("cpu"))(clips)
    gpu = ClipEncoder(build_s3d(None, 0)[0], torch.device("cuda"), "bf16")(clips)
    cosine = (cpu * gpu).sum(1) / np.linalg.norm(cpu, axis=1) / np.linalg.norm(gpu, axis=1)
    assert cosine.min() > 0.99


@pytest.mark.gpu
def test_cuda_end_to_end_with_gpu_decoding(corpus, tmp_path):
    code, stdout = extract(corpus, "-o", tmp_path / "out", "--size", str(SIZE), "--device", "cuda", "--decoder", "cuda", "-q")
    assert code == 0 and stdout.startswith("3 videos ok, 0 failed")
    meta = json.loads((tmp_path / "out" / "extract.json").read_text())
    assert meta["precision"] in ("bf16", "fp16") and meta["device"].startswith("cuda")


def test_auto_precision_on_the_cpu_follows_the_cpus_flags_and_a_folder_keeps_its_own(tmp_path, monkeypatch):
    from videobert import runtime
    from videobert.features import stage as extract_stage

    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    verdicts = {runtime.cpu_bf16_native.__wrapped__() for _ in range(3)}
    assert len(verdicts) == 1 and (native or verdicts == {False})  # emulated bf16 is never chosen
    flags = runtime.cpu_flags()
    if native and flags:
        assert verdicts == {bool(flags & {"avx512_bf16", "amx_bf16"})}
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert "avx512_bf16" in runtime.cpu_flags(cpuinfo) and runtime.cpu_flags(tmp_path / "none") == set()
    cpu = torch.device("cpu")
    for faster, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(extract_stage, "cpu_bf16_native", lambda faster=faster: faster)
        assert extract_stage.extract_precision("auto", cpu) == expected
    (tmp_path / "extract.json").write_text(json.dumps({"precision": "fp32"}))
    monkeypatch.setattr(extract_stage, "cpu_bf16_native", lambda: True)
    assert extract_stage.extract_precision("auto", cpu, tmp_path) == "fp32"  # a folder never mixes two


def test_features_are_reused_whatever_lists_the_videos_and_made_again_when_a_file_changes(corpus, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("moving.mp4", "life.mp4", "-odd name ü.mp4"):
        shutil.copy(corpus.parent / name, videos / name)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"video_id": k, "video": f"videos/{v}", "split": "train"}) + "\n"
                                for k, v in (("moving", "moving.mp4"), ("life", "life.mp4"), ("gradient", "-odd name ü.mp4"))))
    out = tmp_path / "features"
    code, stdout = extract(manifest, "-o", out, *COMMON)
    assert code == 0 and stdout.startswith("3 videos ok, 0 failed")
    before = {name: np.load(out / name) for name in npy_files(out)}
    # The folder lists the same files (the gradient under the id of its file's stem): nothing is extracted.
    code, stdout = extract(videos, "-o", out, *COMMON)
    assert code == 0 and stdout.startswith("3 videos ok (3 already done), 0 failed"), stdout
    (folder_id,) = set(npy_files(out)) - set(before)
    assert np.array_equal(np.load(out / folder_id), before["gradient.npy"])
    # A file that changed (another modification time) is extracted again; the others are kept.
    stamp = (videos / "life.mp4").stat().st_mtime_ns
    os.utime(videos / "life.mp4", ns=(stamp + 10**9, stamp + 10**9))
    code, stdout = extract(videos, "-o", out, *COMMON)
    assert code == 0 and re.match(r"3 videos ok \(2 already done\), 0 failed .*, 2 clips", stdout), stdout
    assert np.array_equal(np.load(out / "life.npy"), before["life.npy"])
