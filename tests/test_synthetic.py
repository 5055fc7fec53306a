import hashlib
import json
import shutil

import numpy as np
import pytest

from tests.conftest import run_cli
from videobert.media import probe
from videobert.synthetic import ACTION_WORDS, ATTRIBUTES, SynthConfig, plan_corpus, read_labels, render_frames
from videobert.synthetic.render import _shape_mask
from videobert.text import Cue


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decoded_frames(path):
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def parse_vtt(path):
    cues = []
    lines = path.read_text().splitlines()
    assert lines[0] == "WEBVTT"
    for i, line in enumerate(lines):
        if "-->" in line:
            start, end = (sum(float(x) * 60**k for k, x in enumerate(reversed(t.strip().split(":")))) for t in line.split("-->"))
            cues.append(Cue(start, end, lines[i + 1]))
    return cues


def test_same_seed_gives_identical_corpus(tmp_path):
    for name in ("a", "b"):
        result = run_cli("synth", tmp_path / name, "--videos", "6", "--seed", "1")
        assert result.returncode == 0, result.stderr
    a, b = tmp_path / "a", tmp_path / "b"
    for rel in ["manifest.jsonl", "labels.jsonl"] + [f"transcripts/synth_{i:04d}.vtt" for i in range(6)]:
        assert digest(a / rel) == digest(b / rel), rel
    for i in range(6):
        assert np.array_equal(decoded_frames(a / f"videos/synth_{i:04d}.mp4"), decoded_frames(b / f"videos/synth_{i:04d}.mp4"))
    other = plan_corpus(SynthConfig(videos=6, seed=2))
    assert [p.segments for p in other] != [p.segments for p in plan_corpus(SynthConfig(videos=6, seed=1))]


def test_videos_have_the_promised_duration_size_and_rate(synth_corpus):
    manifest = [json.loads(l) for l in (synth_corpus / "manifest.jsonl").read_text().splitlines()]
    labels = read_labels(synth_corpus / "labels.jsonl")
    assert len(manifest) == 6
    for entry in manifest:
        info = probe(synth_corpus / entry["video"])
        assert info.codec == "h264" and info.fps == pytest.approx(20.0)
        assert min(info.width, info.height) >= 128
        assert 20.0 <= info.duration <= 60.0
        segments = [r for r in labels if r["video_id"] == entry["video_id"]]
        assert 3 <= len(segments) <= 8
        assert all(3.0 - 1e-6 <= r["end"] - r["start"] <= 6.0 + 1e-6 for r in segments)
        assert segments[-1]["end"] <= info.duration
        assert info.frames == round(info.duration * 20)


def test_cues_lie_within_their_segment_and_name_its_attributes(synth_corpus):
    labels = read_labels(synth_corpus / "labels.jsonl")
    jitter = SynthConfig().jitter
    silent = 0
    for video_id in sorted({r["video_id"] for r in labels}):
        segments = [r for r in labels if r["video_id"] == video_id]
        cues = parse_vtt(synth_corpus / "transcripts" / f"{video_id}.vtt")
        narrated = [r for r in segments if r["narration"]]
        silent += len(segments) - len(narrated)
        assert len(cues) == len(narrated)
        for cue, seg in zip(cues, narrated):
            assert seg["start"] - jitter - 1e-3 <= cue.start < cue.end <= seg["end"] + jitter + 1e-3
            assert cue.text == seg["narration"] == cue.text.lower()
            words = cue.text.split()
            assert seg["colour"] in words and seg["shape"] in words and ACTION_WORDS[seg["action"]] in words
            assert not any(ch in cue.text for ch in ".,?!")
        assert all(a.end <= b.start for a, b in zip(cues, cues[1:])), "cues overlap"
    assert silent > 0, "some segments should be silent"


def test_attributes_and_splits_cover_the_design():
    plans = plan_corpus(SynthConfig(videos=40, seed=3))
    segments = [s for p in plans for s in p.segments]
    for attribute, values in ATTRIBUTES.items():
        assert {getattr(s, attribute) for s in segments} == set(values)
    splits = [p.split for p in plans]
    assert splits.count("test") == 6 and splits.count("val") == 6 and splits.count("train") == 28
    phrasings = {s.narration.text.split()[0] for s in segments if s.narration}
    assert {"now", "okay", "um"} <= phrasings


def test_object_stays_inside_the_centred_square_crop():
    cfg = SynthConfig(videos=4, seed=5)
    h, w = cfg.height, cfg.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for plan in plan_corpus(cfg):
        for seg in plan.segments:
            for t in (0.0, 1.0):
                x = seg.start_xy[0] + t * (seg.end_xy[0] - seg.start_xy[0])
                y = seg.start_xy[1] + t * (seg.end_xy[1] - seg.start_xy[1])
                r = (seg.start_radius + t * (seg.end_radius - seg.start_radius)) * h
                mask = _shape_mask(seg.shape, xx, yy, w / 2 + x * h, h / 2 + y * h, r)
                cols = np.nonzero(mask.any(axis=0))[0]
                rows = np.nonzero(mask.any(axis=1))[0]
                assert mask.sum() > 30
                assert cols.min() >= (w - h) / 2 and cols.max() < (w + h) / 2
                assert rows.min() >= 0 and rows.max() < h


def test_rendered_object_has_the_labelled_colour():
    from videobert.synthetic import COLOURS

    cfg = SynthConfig(videos=1, seed=4)
    plan = plan_corpus(cfg)[0]
    frames = list(render_frames(plan, cfg))
    seg = plan.segments[0]
    middle = frames[int((seg.start + seg.end) / 2 * cfg.fps)]
    pixels = middle.reshape(-1, 3).astype(int)
    target = np.array(COLOURS[seg.colour])
    assert (np.abs(pixels - target).max(axis=1) <= 12).sum() > 30


def test_audio_needs_espeak(tmp_path, monkeypatch):
    result = run_cli("synth", tmp_path / "c", "--videos", "1", "--audio", env={"PATH": "/nonexistent"})
    assert result.returncode == 1
    assert "espeak-ng" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_audio_track_is_muxed(tmp_path):
    result = run_cli("synth", tmp_path / "c", "--videos", "1", "--seed", "2", "--audio")
    assert result.returncode == 0, result.stderr
    info = probe(tmp_path / "c" / "videos" / "synth_0000.mp4")
    assert info.has_audio
