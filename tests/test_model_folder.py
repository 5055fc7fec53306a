"""A trained model folder is portable: copied elsewhere, with the run's other folders deleted, it
turns videos into the same visual words as extract + tokenize, scores like evaluate, indexes and
searches new videos, and names whatever is missing or altered."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import run_cli
from videobert.errors import InputError
from videobert.index import open_index
from videobert.retrieval.metrics import retrieval_metrics
from videobert.text import DEFAULT_MAX_WORDS, DEFAULT_PAUSE, read_transcript, split_sentences


def test_the_copied_folder_alone_gives_the_pipelines_visual_words_and_evaluate_s_scores(portable_model):
    from videobert import VideoBERTPipeline

    pipe = VideoBERTPipeline.from_pretrained(portable_model["copy"], device="cpu")
    test = [e for e in portable_model["manifest"] if e.split == "test"]
    for entry in test[:2]:
        np.testing.assert_array_equal(pipe.visual_words(entry.video), portable_model["tokens"][entry.video_id])
    # features already extracted, and visual words, are videos too
    np.testing.assert_array_equal(pipe.visual_words(pipe.features(test[0].video)), portable_model["tokens"][test[0].video_id])

    # the test split's text-video segments, from the folder's own test index: evaluate's gallery
    gallery = [s for s in pipe.open_index().segments() if s["text"]]
    scores = pipe.score([s["text"] for s in gallery], [np.array(s["video_ids"]) for s in gallery])
    assert scores.shape == (len(gallery), len(gallery)) == (portable_model["metrics"]["gallery"],) * 2
    for direction, matrix in (("t2v", scores), ("v2t", scores.T)):
        got = retrieval_metrics(matrix)
        assert got == {k: portable_model["metrics"][direction][k] for k in got}

    hits = pipe.search("now the red circle moves left", top_k=3)
    assert len(hits) == 3 and hits[0].score >= hits[-1].score
    strip = pipe.filmstrip(hits[0], frames=3)
    assert strip.shape[0] == 3 and strip.dtype == np.uint8
    zero = pipe.zero_shot(test[0].video, "now the [MASK] circle", ["red", "green", "blue"])
    assert set(zero) == {"red", "green", "blue"} and abs(sum(zero.values()) - 1) < 1e-6
    words, probabilities = pipe.text_to_video("the blue square grows", n_words=3)
    assert len(words) == 3 and all(0 <= p <= 1 for p in probabilities)
    assert any(image is not None for image in pipe.exemplars(words))


def test_index_and_retrieve_search_a_new_folder_of_videos(portable_model, tmp_path):
    videos = tmp_path / "new_videos"
    videos.mkdir()
    for entry in portable_model["manifest"][:3]:
        shutil.copy(entry.video, videos / f"clip_{entry.video_id}.mp4")
    spoken = portable_model["manifest"][3]  # a video with its transcript beside it: segments are its sentences
    shutil.copy(spoken.video, videos / "spoken.mp4")
    shutil.copy(spoken.transcript, videos / "spoken.vtt")
    (videos / "broken.mp4").write_bytes(b"not a video")
    index = tmp_path / "index"
    result = run_cli("index", portable_model["copy"], videos, "-o", index, "--device", "cpu", "--window", "4",
                     "--stride", "4")
    assert result.returncode == 0, result.stderr
    assert "4 videos added" in result.stdout and "1 failed" in result.stdout
    opened = open_index(index)
    sentences = split_sentences(read_transcript(spoken.transcript), DEFAULT_PAUSE, DEFAULT_MAX_WORDS)
    rows = [s for s in opened.segments() if s["video_id"] == "spoken"]
    assert [r["text"] for r in rows] == [c.text for c in sentences] and len(rows) >= 2
    np.testing.assert_allclose([(r["start"], r["end"]) for r in rows], [(c.start, c.end) for c in sentences], atol=1e-3)
    for entry in portable_model["manifest"][:3]:  # each video's windows of 4 clips hold its visual words, in order
        words = [s["video_ids"] for s in opened.segments() if s["video_id"] == f"clip_{entry.video_id}"]
        np.testing.assert_array_equal(np.concatenate(words), portable_model["tokens"][entry.video_id])
        assert all(len(w) == 4 for w in words[:-1])
    again = run_cli("index", portable_model["copy"], videos, "-o", index, "--device", "cpu", "--window", "4", "--stride", "4")
    assert "0 videos added" in again.stdout and "4 already there" in again.stdout
    found = run_cli("retrieve", portable_model["copy"], "now the red circle moves left", "--index", index, "--top-k", "2",
                    "--device", "cpu", "--sheet", tmp_path / "hits.jpg")
    assert found.returncode == 0, found.stderr
    assert "clip_" in found.stdout and (tmp_path / "hits.jpg").is_file()
    own = run_cli("retrieve", portable_model["copy"], "now the red circle moves left", "--device", "cpu")  # its test segments
    assert own.returncode == 0 and "   1  " in own.stdout


def test_the_model_card_is_in_the_hub_format_and_says_the_features_are_random(portable_model):
    text = (portable_model["copy"] / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "videobert" and "video-text-retrieval" in front["tags"]
    metrics = {m["name"]: m["value"] for r in front["model-index"][0]["results"] for m in r["metrics"]}
    assert metrics["R@5"] == pytest.approx(portable_model["metrics"]["t2v"]["r5"], abs=1e-4)
    body = text.split("---", 2)[2]
    assert body.index("Random-init S3D") < body.index("## How to use")


def test_a_damaged_folder_or_other_s3d_weights_get_one_line_naming_the_file(portable_model, tmp_path):
    from torchvision.models.video import s3d

    from videobert import VideoBERTPipeline

    broken = tmp_path / "broken"
    shutil.copytree(portable_model["copy"], broken)
    (broken / "visual_vocab" / "codebook.npz").unlink()
    with pytest.raises(InputError, match=r"visual_vocab/codebook.npz: missing; the model folder is incomplete"):
        VideoBERTPipeline.from_pretrained(broken, device="cpu")

    altered = tmp_path / "altered"
    shutil.copytree(portable_model["copy"], altered)
    arrays = dict(np.load(altered / "visual_vocab" / "codebook.npz"))
    arrays["centroids"] = arrays["centroids"] + 1.0
    np.savez(altered / "visual_vocab" / "codebook.npz", **arrays)
    with pytest.raises(InputError, match=r"codebook.npz: codebook hash \w+ differs from the \w+ the model was trained with"):
        VideoBERTPipeline.from_pretrained(altered, device="cpu")

    weights = tmp_path / "other_s3d.pth"
    torch.save(s3d(weights=None).state_dict(), weights)
    with pytest.raises(InputError, match=r"other_s3d.pth: the model's visual words come from a randomly initialised S3D"):
        VideoBERTPipeline.from_pretrained(portable_model["copy"], s3d_weights=weights, device="cpu")

    truncated = tmp_path / "truncated"
    shutil.copytree(portable_model["copy"], truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    result = run_cli("retrieve", truncated, "the red circle", "--device", "cpu")
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert "model.safetensors" in message and ("unreadable weights" in message or "do not match" in message)


def test_a_span_of_a_video_is_answered_about_and_a_video_file_is_decoded_once(portable_model, monkeypatch):
    from videobert import VideoBERTPipeline

    pipe = VideoBERTPipeline.from_pretrained(portable_model["copy"], device="cpu")
    entry = next(e for e in portable_model["manifest"] if e.split == "test")
    decoded = []
    real = pipe.videos.features
    monkeypatch.setattr(pipe.videos, "features", lambda video: decoded.append(video) or real(video))
    words = pipe.visual_words(entry.video)
    seconds = pipe.clip_seconds()
    span = pipe.visual_words(entry.video, 2 * seconds, 5 * seconds)  # clips 2, 3 and 4
    np.testing.assert_array_equal(span, words[2:5])
    np.testing.assert_array_equal(pipe.visual_words(entry.video, 2.1 * seconds, 2.2 * seconds), words[2:3])
    sentences = ["now the red circle moves left", "the blue square grows"]
    whole, part = pipe.score(sentences, [entry.video]), pipe.score(sentences, entry.video, 2 * seconds, 5 * seconds)
    np.testing.assert_allclose(part, pipe.score(sentences, [words[2:5]]))
    assert whole.shape == part.shape == (2, 1)
    zero = pipe.zero_shot(entry.video, "now the [MASK] circle", ["red", "green", "blue"], start=0, end=3 * seconds)
    assert zero == pipe.zero_shot(words[:3], "now the [MASK] circle", ["red", "green", "blue"])
    assert len(decoded) == 1  # one decode of the file for every question above
    with pytest.raises(InputError, match="no clip of the video's"):
        pipe.visual_words(entry.video, 10_000, 10_001)
    with pytest.raises(InputError, match="end must come after start"):
        pipe.score(sentences, entry.video, 3, 3)
