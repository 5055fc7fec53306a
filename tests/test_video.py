"""Clip decoding: ffmpeg resampling, scaling, cropping, rotation, timing and bad files."""

import shutil

import numpy as np
import pytest

from videobert.errors import InputError
from videobert.media import ClipReader, clip_command, probe, run_ffmpeg

# Smooth content: a misplaced crop or a wrong frame shows up as a large error, scaler rounding does not.
GRADIENT = "geq=r='X*255/W':g='Y*255/H':b='128+100*sin(2*PI*T)'"
# Quadrants yellow | green over red | black: tells which way is up.
QUADRANTS = "geq=r='255*lt(X,W/2)':g='255*lt(Y,H/2)':b='0'"


def lavfi_video(path, seconds, fps=20, size=(64, 48), content="testsrc2", pix_fmt="yuv420p", lossless=False,
                audio=False, output_args=()):
    """Encode a short H.264 video from an ffmpeg lavfi source (``content``: a source, with options
    if any, or a geq filter over a black frame)."""
    width, height = size
    if content.startswith("geq="):
        source = f"color=c=black:s={width}x{height}:r={fps},format=yuv444p,{content}"
    else:
        source = f"{content}{':' if '=' in content else '='}s={width}x{height}:r={fps}"
    args = ["-y", "-f", "lavfi", "-i", source]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440", "-c:a", "aac"]
    args += ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix_fmt, *output_args]
    if lossless:
        args += ["-qp", "0"]
    run_ffmpeg([*args, str(path)], what=str(path))
    return path


def decode(path, **kwargs):
    kwargs.setdefault("size", 32)
    with ClipReader(path, **kwargs) as reader:
        clips = list(reader)
    return np.stack(clips) if clips else np.zeros((0,)), reader


@pytest.mark.parametrize("source_fps, seconds, fps, clip_frames", [(25, 4.0, 20, 30), (30, 3.0, 10, 8), (20, 4.5, 20, 30)])
def test_clip_count_and_timing(tmp_path, source_fps, seconds, fps, clip_frames):
    # The red channel encodes each frame's time; clip i must hold the picture at i*clip_seconds + k/fps.
    video = lavfi_video(tmp_path / "ramp.mp4", seconds, source_fps, content="geq=r='40*T':g='128':b='128'", lossless=True)
    clips, reader = decode(video, fps=fps, clip_frames=clip_frames)
    expected_frames = round(seconds * fps)
    assert reader.frames == expected_frames
    assert clips.shape == (expected_frames // clip_frames, clip_frames, 32, 32, 3)
    shown = clips[..., 0].mean(axis=(2, 3)) / 40  # [clip, frame] seconds
    wanted = (np.arange(clips.shape[0])[:, None] * clip_frames + np.arange(clip_frames)[None, :]) / fps
    # a frame shows the latest source frame at its time: up to one source frame late or early (rounding)
    assert np.abs(shown - wanted).max() <= 1 / source_fps + 0.03


def test_variable_frame_rate_is_resampled_by_timestamp(tmp_path):
    # 30 fps for 2 s, then every third frame (10 fps) for 2 s, timestamps kept.
    video = tmp_path / "vfr.mp4"
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "color=c=black:s=48x48:r=30:d=4,format=yuv444p,geq=r='50*T':g='128':b='128'",
                "-vf", "select='lt(t,2)+not(mod(n,3))'", "-fps_mode", "vfr", "-c:v", "libx264", "-qp", "0",
                "-preset", "ultrafast", str(video)], "vfr")
    clips, _ = decode(video, fps=20, clip_frames=10)
    assert clips.shape[0] == 7  # 3.9 s of frames at 20 fps: 78 frames, 7 clips of 10
    shown = clips[..., 0].mean(axis=(2, 3)).reshape(-1) / 50
    wanted = np.arange(len(shown)) / 20
    assert np.abs(shown[:38] - wanted[:38]).max() <= 1 / 30 + 0.03
    assert np.abs(shown[42:] - wanted[42:]).max() <= 1 / 10 + 0.03  # held frames of the 10 fps part


@pytest.mark.parametrize("size, pix_fmt, out", [((161, 123), "yuv444p", 40), ((90, 160), "yuv420p", 41)])
def test_short_side_scaled_then_centre_cropped(tmp_path, size, pix_fmt, out):
    import av
    from PIL import Image

    video = lavfi_video(tmp_path / "odd.mp4", 1.5, size=size, content=GRADIENT, pix_fmt=pix_fmt, lossless=True)
    clips, _ = decode(video, fps=20, clip_frames=30, size=out)
    with av.open(str(video)) as container:
        frames = [f.to_image() for f in container.decode(video=0)]
    width, height = frames[0].size
    scale = out / min(width, height)
    resized = [f.resize((max(out, round(width * scale)), max(out, round(height * scale))), Image.BICUBIC) for f in frames]
    left, top = (resized[0].width - out) // 2, (resized[0].height - out) // 2
    reference = np.stack([np.asarray(r.crop((left, top, left + out, top + out))) for r in resized])
    assert clips.shape == (1, 30, out, out, 3)
    assert np.abs(clips[0].astype(float) - reference).mean() < 6


@pytest.mark.parametrize("display_rotation", [90, 180, 270])
def test_rotated_video_is_decoded_upright(tmp_path, display_rotation):
    plain = lavfi_video(tmp_path / "plain.mp4", 1.5, size=(80, 48), content=QUADRANTS)
    rotated = tmp_path / "rotated.mp4"
    run_ffmpeg(["-y", "-display_rotation:v:0", str(display_rotation), "-i", str(plain), "-c", "copy", str(rotated)], "rotate")
    info = probe(rotated)
    assert info.rotation == (-display_rotation) % 360  # clockwise
    grid = np.array([[[255, 255, 0], [0, 255, 0]], [[255, 0, 0], [0, 0, 0]]])
    upright = np.rot90(grid, k=-info.rotation // 90)
    # ffmpeg's own rotation (CPU decoder) and the explicit one the GPU decoder uses agree
    for rotation in (None, info.rotation):
        clips, _ = decode(rotated, clip_frames=30, rotation=rotation)
        frame = clips[0, 15].astype(int)
        quadrants = np.array([[frame[8, 8], frame[8, 24]], [frame[24, 8], frame[24, 24]]])
        assert np.abs(quadrants - upright).max() < 40, (rotation, quadrants.tolist())


def test_audio_track_and_awkward_names_make_no_difference(tmp_path):
    silent = lavfi_video(tmp_path / "silent.mp4", 1.5)
    voiced = lavfi_video(tmp_path / "voiced.mp4", 1.5, audio=True)
    assert probe(voiced).has_audio and not probe(silent).has_audio
    reference, _ = decode(silent)
    assert reference.shape[0] == 1
    assert np.array_equal(decode(voiced)[0], reference)
    for name in ("-starts with dash.mp4", "spaces and ünïcødé 视频.mp4", "-i"):
        awkward = tmp_path / name
        shutil.copy(silent, awkward)
        assert np.array_equal(decode(awkward)[0], reference), name
    command = clip_command(tmp_path / "-i", fps=20, size=32)
    assert f"file:{tmp_path / '-i'}" in command and "-i" in command[: command.index(f"file:{tmp_path / '-i'}")]


def test_shorter_than_one_clip_is_an_input_error(tmp_path):
    video = lavfi_video(tmp_path / "short.mp4", 1.0)
    with pytest.raises(InputError, match="shorter than one clip"):
        decode(video, fps=20, clip_frames=30)


def test_truncated_and_garbage_files_are_input_errors(tmp_path):
    whole = lavfi_video(tmp_path / "whole.mp4", 8.0, output_args=["-movflags", "+faststart"])
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        decode(truncated, expected_seconds=probe(truncated).video_duration)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(InputError, match="ffmpeg could not decode it"):
        decode(text)
    with pytest.raises(InputError, match="not a readable video"):
        probe(text)
    audio_only = tmp_path / "audio.mp4"
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(audio_only)], "audio")
    with pytest.raises(InputError, match="audio-only"):
        probe(audio_only)


def test_leaving_early_stops_and_reaps_ffmpeg(tmp_path):
    video = lavfi_video(tmp_path / "long.mp4", 20.0)
    with ClipReader(video, size=32, clip_frames=10) as reader:
        first = next(iter(reader))
        process = reader._proc
    assert first.shape == (10, 32, 32, 3)
    assert process.returncode is not None  # waited for: no zombie, no orphan


def test_cuda_decoder_command_scales_on_the_gpu_and_rotates_after_download(tmp_path):
    command = " ".join(clip_command(tmp_path / "v.mp4", fps=20, size=224, decoder="cuda", rotation=90, gpu=1))
    assert "-hwaccel cuda" in command and "-hwaccel_output_format cuda" in command and "-hwaccel_device 1" in command
    assert "-noautorotate" in command
    assert command.index("scale_cuda") < command.index("hwdownload") < command.index("crop") < command.index("transpose")


@pytest.mark.gpu
def test_cuda_decoder_matches_cpu_decoder(tmp_path):
    from videobert.media import check_cuda_decoder

    check_cuda_decoder(0)
    video = lavfi_video(tmp_path / "v.mp4", 3.0, size=(320, 180), content=GRADIENT)
    cpu, _ = decode(video, size=112)
    gpu, _ = decode(video, size=112, decoder="cuda", rotation=0)
    assert gpu.shape == cpu.shape
    assert np.abs(gpu.astype(float) - cpu).mean() < 6
