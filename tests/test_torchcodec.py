"""The torchcodec decoder against the ffmpeg pipe: the same frames of the same videos (timing,
variable frame rates, odd and non-square sizes, rotation), the same failures, and the GPU path's
fallback to the CPU (exercised here with NVDEC made to fail)."""

import json
import logging

import numpy as np
import pytest
import torch

from tests.test_video import GRADIENT, QUADRANTS, lavfi_video
from videobert.errors import ConfigError, InputError
from videobert.media import ClipReader, probe, run_ffmpeg

torchcodec_reader = pytest.importorskip("videobert.features.torchcodec_reader")
try:
    torchcodec_reader.check_torchcodec("cpu")
except ConfigError as exc:  # torchcodec or FFmpeg's shared libraries missing: the ffmpeg pipe is tested elsewhere
    pytest.skip(str(exc), allow_module_level=True)
from videobert.features.torchcodec_reader import TorchcodecClipReader  # noqa: E402

# The tolerance on pixels. Both decoders show the same source frame, but ffmpeg scales in YUV (chroma
# at half resolution, bicubic) and converts to RGB after, while torchcodec converts at full
# resolution and the frame is scaled in RGB (bicubic, antialiased): edges and chroma land a few levels
# apart — 1 to 4 of 255 on average over a frame on these videos. A wrong frame, a misplaced crop or a
# picture the wrong way up differ by tens of levels.
PIXEL_TOLERANCE = 5.0
# Each source frame's number in its colour: red carries N mod 16, green N div 16 (steps of 16 levels),
# so the frame a decoder shows is read back exactly, whatever its scaling and colour rounding.
NUMBERED = "geq=r='16*mod(N,16)+8':g='16*floor(N/16)+8':b='128'"


def frames(reader_class, path, **kwargs):
    """Every clip of ``path`` (uint8 [clips, T, S, S, 3]) and the reader."""
    kwargs.setdefault("size", 32)
    with reader_class(path, **kwargs) as reader:
        clips = []
        while True:
            chunk = torch.empty((3, *reader.clip_shape), dtype=torch.uint8)
            filled = reader.read_clips(chunk)
            clips.append(chunk[:filled].numpy().copy())
            if filled < len(chunk):
                break
    return np.concatenate(clips), reader


def both(path, **kwargs):
    ours, ours_reader = frames(TorchcodecClipReader, path, **kwargs)
    theirs, theirs_reader = frames(ClipReader, path, **kwargs)
    assert ours.shape == theirs.shape
    assert ours_reader.frames == theirs_reader.frames
    return ours, theirs


def frame_numbers(clips):
    red, green = clips[..., 0].mean(axis=(-1, -2)), clips[..., 1].mean(axis=(-1, -2))
    return (np.round((red - 8) / 16) + 16 * np.round((green - 8) / 16)).astype(int).reshape(-1)


def per_frame_difference(ours, theirs):
    return np.abs(ours.astype(float) - theirs).mean(axis=(-1, -2, -3)).reshape(-1)


@pytest.mark.parametrize("source_fps, seconds, fps, clip_frames", [(25, 4.0, 20, 30), (30, 3.0, 10, 8), (20, 4.5, 20, 30),
                                                                   (30, 3.0, 10, 15)])
def test_the_frames_ffmpeg_shows_at_each_time(tmp_path, source_fps, seconds, fps, clip_frames):
    video = lavfi_video(tmp_path / "numbered.mp4", seconds, source_fps, content=NUMBERED, lossless=True)
    ours, theirs = both(video, fps=fps, clip_frames=clip_frames)
    assert len(ours) == round(seconds * fps) // clip_frames
    assert np.array_equal(frame_numbers(ours), frame_numbers(theirs))
    assert per_frame_difference(ours, theirs).max() < PIXEL_TOLERANCE


def test_variable_frame_rate_gives_the_same_frames(tmp_path):
    # 30 fps for 2 s, then every third frame (10 fps) for 2 s, timestamps kept (test_video's file, numbered)
    video = tmp_path / "vfr.mp4"
    run_ffmpeg(["-y", "-f", "lavfi", "-i", f"color=c=black:s=48x48:r=30:d=4,format=yuv444p,{NUMBERED}",
                "-vf", "select='lt(t,2)+not(mod(n,3))'", "-fps_mode", "vfr", "-c:v", "libx264", "-qp", "0",
                "-preset", "ultrafast", str(video)], "vfr")
    ours, theirs = both(video, fps=20, clip_frames=10)
    assert len(ours) == 7
    numbers = frame_numbers(ours)
    assert np.array_equal(numbers, frame_numbers(theirs))
    assert len(set(numbers[42:])) < len(numbers[42:])  # the 10 fps part: frames held, as ffmpeg holds them


@pytest.mark.parametrize("size, pix_fmt, out, content, extra", [
    ((161, 123), "yuv444p", 40, GRADIENT, ()),
    ((90, 160), "yuv420p", 41, GRADIENT, ()),
    ((161, 123), "yuv420p", 40, "testsrc2", ()),  # sharp edges: a crop one pixel off shows (13 levels and more)
    ((64, 48), "yuv420p", 32, "testsrc2", ()),  # 43 x 32 scaled: the crop's offset is 5.5, ffmpeg takes 6
    ((320, 240), "yuv420p", 112, "testsrc2", ("-vf", "setsar=4/3")),  # non-square pixels: 427 x 240 on screen
    ((640, 360), "yuv420p", 112, "testsrc2", ()),
])
def test_odd_sizes_and_non_square_pixels_scale_and_crop_alike(tmp_path, size, pix_fmt, out, content, extra):
    video = lavfi_video(tmp_path / "odd.mp4", 1.5, size=size, content=content, pix_fmt=pix_fmt, output_args=extra)
    ours, theirs = both(video, fps=20, clip_frames=30, size=out)
    assert ours.shape == (1, 30, out, out, 3)
    assert per_frame_difference(ours, theirs).max() < PIXEL_TOLERANCE


@pytest.mark.parametrize("display_rotation", [90, 180, 270])
def test_rotated_video_is_upright_like_ffmpegs(tmp_path, display_rotation):
    plain = lavfi_video(tmp_path / "plain.mp4", 1.5, size=(80, 48), content=QUADRANTS)
    rotated = tmp_path / "rotated.mp4"
    run_ffmpeg(["-y", "-display_rotation:v:0", str(display_rotation), "-i", str(plain), "-c", "copy", str(rotated)], "rotate")
    ours, theirs = both(rotated, clip_frames=30)
    grid = np.array([[[255, 255, 0], [0, 255, 0]], [[255, 0, 0], [0, 0, 0]]])
    upright = np.rot90(grid, k=-probe(rotated).rotation // 90)
    frame = ours[0, 15].astype(int)
    quadrants = np.array([[frame[8, 8], frame[8, 24]], [frame[24, 8], frame[24, 24]]])
    assert np.abs(quadrants - upright).max() < 40, quadrants.tolist()
    assert per_frame_difference(ours, theirs).max() < PIXEL_TOLERANCE


def test_audio_track_and_awkward_names_make_no_difference(tmp_path):
    video = lavfi_video(tmp_path / "-starts with dash ü 视频.mp4", 1.5, audio=True)
    ours, theirs = both(video)
    assert per_frame_difference(ours, theirs).max() < PIXEL_TOLERANCE


def test_bad_files_fail_as_the_ffmpeg_pipe_does(tmp_path):
    whole = lavfi_video(tmp_path / "whole.mp4", 8.0, output_args=["-movflags", "+faststart"])
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    expected = probe(truncated).video_duration
    with pytest.raises(InputError, match="truncated.mp4: truncated or corrupt .decoded 2.[0-9] s of the 8.0 s") as ours:
        frames(TorchcodecClipReader, truncated, expected_seconds=expected)
    with pytest.raises(InputError, match="truncated or corrupt") as theirs:
        frames(ClipReader, truncated, expected_seconds=expected)
    assert ours.value.kind == theirs.value.kind == "decode"
    # the frames before the damage are decoded, as ffmpeg decodes them: the same seconds are reported
    assert str(theirs.value).split("(")[1][:28] == str(ours.value).split("(")[1][:28]

    damaged = tmp_path / "damaged.mp4"
    data = bytearray(lavfi_video(tmp_path / "source.mp4", 10.0, 30, size=(320, 240)).read_bytes())
    data[len(data) // 2: len(data) // 2 + 4000] = bytes(4000)
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputError, match="damaged.mp4: (damaged|truncated or corrupt)"):
        frames(TorchcodecClipReader, damaged, expected_seconds=probe(damaged).duration)

    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(InputError, match="notes.mp4: torchcodec could not decode it .Could not open input file"):
        frames(TorchcodecClipReader, text)

    short = lavfi_video(tmp_path / "short.mp4", 1.0)
    with pytest.raises(InputError, match="shorter than one clip .20 frames = 1.00 s at 20 fps") as error:
        frames(TorchcodecClipReader, short, fps=20, clip_frames=30)
    assert error.value.kind == "too_short"


def test_the_gpus_float_scaling_matches_the_cpu_kernel():
    # On a GPU frames are scaled in float32 (torchvision's uint8 kernel is the CPU's); the same filter.
    generator = torch.Generator().manual_seed(0)
    frames_in = torch.randint(0, 256, (4, 3, 90, 160), dtype=torch.uint8, generator=generator)
    smooth = torch.nn.functional.avg_pool2d(frames_in.float(), 5, 1, 2).to(torch.uint8)
    cpu = torchcodec_reader.scale_and_crop(smooth, 64, 114, 64)
    as_on_gpu = torchcodec_reader.scale_float(smooth, 64, 114)[:, :, :, 25:89].permute(0, 2, 3, 1)
    assert cpu.shape == as_on_gpu.shape == (4, 64, 64, 3)
    assert (cpu.int() - as_on_gpu.int()).abs().max() <= 1


@pytest.fixture
def nvdec_fails(monkeypatch):
    """NVDEC refuses every video (as for a codec the GPU cannot decode); the CPU decodes as usual.
    Clips are handed over in host memory, there being no GPU here."""
    from videobert.features import decode

    real_open = torchcodec_reader._open
    attempts = []

    def refusing_open(VideoDecoder, source, device, threads):
        if device.type == "cuda":
            attempts.append(source)
            raise RuntimeError("create_decoder, /src/NVDEC.cpp:12, Unsupported codec for NVDEC: mpeg4")
        return real_open(VideoDecoder, source, device, threads)

    monkeypatch.setattr(torchcodec_reader, "_open", refusing_open)
    monkeypatch.setattr(torchcodec_reader, "_told", set())
    monkeypatch.setattr(decode, "clips_device", lambda decoder, gpu: torch.device("cpu"))
    return attempts


def test_a_video_nvdec_cannot_take_is_decoded_on_the_cpu_said_once(tmp_path, nvdec_fails, caplog):
    from videobert.features.extract import Runtime, extract_features
    from videobert.features.s3d import ClipEncoder, build_s3d
    from videobert.manifest import VideoEntry

    entries = [VideoEntry(f"v{i}", lavfi_video(tmp_path / f"v{i}.mp4", 1.6 + i, size=(96, 64))) for i in range(2)]
    encoder = ClipEncoder(build_s3d(None, 0)[0], torch.device("cpu"), "fp32")
    runtime = Runtime(torch.device("cpu"), "fp32", batch_size=2, workers=0, decode_threads=1, gpu=0)
    run = {}
    with caplog.at_level(logging.WARNING, logger="videobert.features.torchcodec_reader"):
        for decoder in ("torchcodec-cuda", "torchcodec"):
            run[decoder] = {v.entry.video_id: v for v in extract_features(entries, encoder, runtime, 10, 15, 32, decoder)}
    assert len(nvdec_fails) == 2  # NVDEC was tried for each video of the GPU run
    warnings = [r.getMessage() for r in caplog.records if "not decoded on the GPU" in r.getMessage()]
    assert len(warnings) == 1 and "Unsupported codec for NVDEC: mpeg4" in warnings[0]  # said once
    for video_id, video in run["torchcodec-cuda"].items():
        assert video.error is None and video.cpu_reason.startswith("NVDEC could not open it: Unsupported codec")
        assert np.array_equal(video.features, run["torchcodec"][video_id].features)  # the CPU decoder's clips
        assert run["torchcodec"][video_id].cpu_reason == ""


def test_a_video_nvdec_fails_part_way_through_is_decoded_again_on_the_cpu(tmp_path, monkeypatch):
    from videobert.features import decode
    from videobert.features.decode import ClipChunks, DecodeSettings

    real_open = torchcodec_reader._open

    class FailingNvdec:  # opens (metadata as the file's), then cannot decode a frame
        def __init__(self, source):
            self.metadata = real_open(torchcodec_reader._video_decoder(), source, torch.device("cpu"), 1).metadata

        def get_frames_played_at(self, times):
            raise RuntimeError("decode, /src/NVDEC.cpp:7, CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torchcodec_reader, "_open", lambda VideoDecoder, source, device, threads: FailingNvdec(source)
                        if device.type == "cuda" else real_open(VideoDecoder, source, device, threads))
    monkeypatch.setattr(decode, "clips_device", lambda decoder, gpu: torch.device("cpu"))
    video = lavfi_video(tmp_path / "v.mp4", 3.0, size=(96, 64))
    records = {}
    for decoder in ("torchcodec-cuda", "torchcodec"):
        records[decoder] = list(ClipChunks([video], DecodeSettings(10, 15, 32, decoder, 1, 0, chunk_clips=4)))
    gpu_end, cpu_end = records["torchcodec-cuda"][-1], records["torchcodec"][-1]
    assert gpu_end[:3] == cpu_end[:3] == ("end", 0, 2)
    assert gpu_end[3].startswith("NVDEC decoding failed: ") and "illegal memory access" in gpu_end[3]
    assert torch.equal(records["torchcodec-cuda"][0][3], records["torchcodec"][0][3])


def test_nvdecs_own_fallback_is_reported():
    from torchcodec.decoders import CpuFallbackStatus

    class Decoder:
        cpu_fallback = CpuFallbackStatus()

    assert torchcodec_reader.nvdec_refusal(Decoder()) is None  # status not known: nothing to say
    status = Decoder.cpu_fallback
    status.status_known, status._is_fallback, status._video_not_supported, status._backend = True, True, True, "CUDA"
    assert "Video not supported" in torchcodec_reader.nvdec_refusal(Decoder())


def test_videos_left_to_the_cpu_are_listed_in_extract_json(tmp_path):
    from videobert.features.stage import record_cpu_decoded

    (tmp_path / "extract.json").write_text(json.dumps({"fps": 10, "decoder": "torchcodec-cuda"}))
    record_cpu_decoded(tmp_path, {"a": "Video not supported"})
    record_cpu_decoded(tmp_path, {"b": "NVDEC could not open it: x"})
    meta = json.loads((tmp_path / "extract.json").read_text())
    assert meta == {"fps": 10, "decoder": "torchcodec-cuda",
                    "cpu_decoded": {"a": "Video not supported", "b": "NVDEC could not open it: x"}}


def test_missing_ffmpeg_libraries_are_one_line_saying_what_to_install(monkeypatch, tmp_path):
    def unloadable(*args, **kwargs):
        raise RuntimeError("Could not load libtorchcodec. Likely causes:\n  1. FFmpeg is not properly installed")

    monkeypatch.setattr("torchcodec.decoders.VideoDecoder", unloadable)
    with pytest.raises(ConfigError) as error:
        TorchcodecClipReader(tmp_path / "v.mp4")
    message = str(error.value)
    assert "\n" not in message and "libavdevice59" in message and "pip install torchcodec" in message


def test_a_models_videos_are_decoded_by_the_library_its_features_were():
    from videobert.features.decode import decoder_for_device

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert [decoder_for_device(d, cpu) for d in ("cpu", "cuda", "torchcodec", "torchcodec-cuda")] == \
        ["cpu", "cpu", "torchcodec", "torchcodec"]
    assert [decoder_for_device(d, gpu) for d in ("cpu", "cuda", "torchcodec", "torchcodec-cuda", "other")] == \
        ["cpu", "cuda", "torchcodec", "torchcodec-cuda", "cpu"]
