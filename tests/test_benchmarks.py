"""YouCook II and MSR-VTT as distributed: small copies made from synthetic videos in the datasets'
own formats (a missing video, an .mkv, a .webm, a segment past its video's end, non-ASCII text,
duplicate captions), prepared, extracted, tokenized and evaluated end to end."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from tests.conftest import run_cli
from videobert.benchmarks import stage as prepare_stage
from videobert.benchmarks.pos import BrillTagger, verb_object_by_lists, verb_object_by_tags
from videobert.errors import InputError
from videobert.manifest import read_manifest
from videobert.media import ffmpeg_exe, probe
from videobert.retrieval.metrics import retrieval_metrics

NON_ASCII = "sauté the crème fraîche with garlic"
SENTENCES = ["cut the onion into small pieces", "fry the chicken in hot oil", "add the chopped tomatoes to the pan",
             "stir the sauce slowly", "sauté the crème fraîche with garlic", "pour the sauce over the noodles"]


def convert(source, target, codec: list[str]) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), *codec, str(target)], check=True)


@pytest.fixture(scope="module")
def youcook2_root(portable_model, tmp_path_factory):
    """The portable run's synthetic corpus written out in YouCook II's format: its narrated segments
    as the annotations (integer seconds, as YouCook II has them), 5 training and 3 validation videos
    found (one .mkv, one .webm), one validation video missing, a segment past its video's end,
    duplicate captions and a non-ASCII one."""
    root = tmp_path_factory.mktemp("youcook2")
    synth = portable_model["run"] / "synth"
    manifest = read_manifest(synth / "manifest.jsonl")
    narrated = {}
    for line in (synth / "labels.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("narration"):  # segments the synthetic narrator leaves silent have none
            narrated.setdefault(row["video_id"], []).append(row)
    database = {}
    for number, entry in enumerate(manifest[:8]):
        subset = "validation" if number >= 5 else "training"
        folder = root / "raw_videos" / subset / "101"
        folder.mkdir(parents=True, exist_ok=True)
        duration = probe(entry.video).duration
        if number == 5:
            convert(entry.video, folder / f"{entry.video_id}.mkv", ["-c", "copy"])
        elif number == 6:
            convert(entry.video, folder / f"{entry.video_id}.webm", ["-c:v", "libvpx", "-b:v", "300k", "-an"])
        else:
            shutil.copy(entry.video, folder / f"{entry.video_id}.mp4")
        segments = [{"id": k, "segment": [int(r["start"]), min(int(r["end"]) + 1, int(duration))], "sentence": r["narration"]}
                    for k, r in enumerate(narrated[entry.video_id])]
        if number == 0:
            segments[0]["sentence"] = NON_ASCII
        if number == 7:
            segments[1]["sentence"] = segments[0]["sentence"]  # duplicate captions
            segments.append({"id": len(segments), "segment": [int(duration) + 5, int(duration) + 9], "sentence": "serve the soup"})
        database[entry.video_id] = {"subset": subset, "recipe_type": "101", "duration": duration, "annotations": segments}
    database["gone_video0"] = {"subset": "validation", "recipe_type": "101", "duration": 30.0,
                               "annotations": [{"id": 0, "segment": [1, 5], "sentence": "boil the water"}]}
    (root / "youcookii_annotations_trainval.json").write_text(json.dumps({"database": database}))
    return root


def annotated(root, subset=None):
    database = json.loads((root / "youcookii_annotations_trainval.json").read_text())["database"]
    return {vid: v["annotations"] for vid, v in database.items() if subset in (None, v["subset"])}


def test_prepare_youcook2_lists_what_is_missing_and_labels_verbs_and_objects(youcook2_root, tmp_path):
    data = tmp_path / "data"
    summary = prepare_stage.run("youcook2", youcook2_root, data, prepare_stage.PrepareConfig()).details
    entries = read_manifest(data / "manifest.jsonl")
    assert len(entries) == 8 and {e.video.suffix for e in entries} == {".mp4", ".mkv", ".webm"}
    assert {e.split for e in entries} == {"train", "test"}
    missing = {r["video_id"]: r for r in map(json.loads, (data / "missing.jsonl").read_text().splitlines())}
    assert missing["gone_video0"]["kind"] == "missing"
    assert [r["kind"] for r in missing.values()].count("too_short") == 1
    segments = [json.loads(line) for line in (data / "segments.jsonl").read_text(encoding="utf-8").splitlines()]
    found = {vid: rows for vid, rows in annotated(youcook2_root).items() if vid != "gone_video0"}
    assert len(segments) == sum(map(len, found.values())) - 1 and not any(s["sentence"] == "serve the soup" for s in segments)
    assert any(s["sentence"] == NON_ASCII for s in segments)
    assert summary["videos"]["missing"] == 1 and summary["videos"]["too_short"] == 1
    labels = [json.loads(line) for line in (data / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(labels) == sum(s["split"] == "test" for s in segments) == sum(
        map(len, annotated(youcook2_root, "validation").values())) - 2  # less the missing video's and the one past the end
    assert all(r.get(key, "") in [*r["sentence"].split(), ""] for r in labels for key in ("verb", "object"))
    assert sum("verb" in r for r in labels) >= len(labels) / 2
    spec = yaml.safe_load((data / "zeroshot.yaml").read_text())
    assert spec["template"] == "now let me show you how to [MASK] the [MASK]"
    assert set(spec["attributes"]["verb"]["classes"]) == {r["verb"] for r in labels if "verb" in r}


def test_the_tagger_reads_instructions_and_word_lists_override_it():
    tagger = BrillTagger()
    for sentence, expected in (("fry the chicken in hot oil", ("fry", "chicken")), ("slice the onions", ("slice", "onions")),
                               ("add the chopped tomatoes to the pan", ("add", "tomatoes")),
                               ("pour the sauce over the noodles", ("pour", "sauce")), (NON_ASCII, ("sauté", "crème")),
                               ("um here the yellow circle is moving up", ("moving", None)),
                               ("next we see a yellow square moving up", ("see", "square")), ("heat oil in a pan", (None, None))):
        assert verb_object_by_tags(sentence, tagger) == expected, sentence
    assert verb_object_by_lists("now the red circle moves left", {"moves", "grows"}, {"circle", "square"}) == ("moves", None)
    assert verb_object_by_lists("the circle moves and the square grows", {"moves", "grows"}, {"circle", "square"}) == (
        "moves", "square")


def test_a_malformed_annotation_file_is_one_line_naming_the_file_and_entry(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "segments.jsonl").write_text("kept\n")  # what an earlier prepare wrote
    root = tmp_path / "root"
    root.mkdir()
    path = root / "youcookii_annotations_trainval.json"
    cases = [
        ("{not json", r"youcookii_annotations_trainval.json: cannot read YouCook II annotations \(invalid JSON"),
        (json.dumps({"videos": {}}), r"youcookii_annotations_trainval.json: not YouCook II annotations \(no 'database'"),
        (json.dumps({"database": {"abc": {"subset": "training", "recipe_type": "1",
                                          "annotations": [{"segment": [9, 3], "sentence": "x"}]}}}),
         r"database.abc.annotations\[0\]: segment \[9, 3\] does not end after it starts"),
        (json.dumps({"database": {"abc": {"subset": "testing", "recipe_type": "1", "annotations": []}}}),
         r"database.abc: unknown subset 'testing'"),
    ]
    for content, message in cases:
        path.write_text(content)
        with pytest.raises(InputError, match=message):
            prepare_stage.run("youcook2", root, data, prepare_stage.PrepareConfig())
        result = run_cli("prepare", "youcook2", root, "-o", data)
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert (data / "segments.jsonl").read_text() == "kept\n"


@pytest.fixture(scope="module")
def msrvtt_root(portable_model, tmp_path_factory):
    """MSR-VTT's files over the portable run's videos: 3 JSFusion test pairs, 4 train videos with
    duplicate captions, one train video missing."""
    root = tmp_path_factory.mktemp("msrvtt")
    (root / "videos" / "all").mkdir(parents=True)
    manifest = read_manifest(portable_model["run"] / "synth" / "manifest.jsonl")
    videos, sentences = [], []
    for number, entry in enumerate(manifest[:7]):
        video_id = f"video{number}"
        shutil.copy(entry.video, root / "videos" / "all" / f"{video_id}.mp4")
        videos.append({"category": 1, "url": f"https://www.youtube.com/watch?v=x{number}", "video_id": video_id,
                       "start time": 0.0, "end time": probe(entry.video).duration, "split": "train", "id": number})
        for k in range(3):
            sentences.append({"caption": SENTENCES[(number + k) % 6] if k < 2 else SENTENCES[number % 6], "video_id": video_id,
                              "sen_id": len(sentences)})
    videos.append({"category": 1, "url": "u", "video_id": "video99", "start time": 0, "end time": 10, "split": "train", "id": 99})
    sentences.append({"caption": "a man is cooking", "video_id": "video99", "sen_id": len(sentences)})
    (root / "MSRVTT_data.json").write_text(json.dumps({"info": {}, "videos": videos, "sentences": sentences}))
    rows = ["key,vid_key,video_id,sentence"] + [f"ret{i},msr{4 + i},video{4 + i},{SENTENCES[i]}" for i in range(3)]
    (root / "MSRVTT_JSFUSION_test.csv").write_text("\n".join(rows) + "\n")
    return root


def test_msrvtt_and_youcook2_prepare_extract_tokenize_evaluate_end_to_end(portable_model, msrvtt_root, youcook2_root, tmp_path):
    from videobert import VideoBERTPipeline

    model = tmp_path / "model"  # evaluate records its figures in the model folder: not in the shared one
    shutil.copytree(portable_model["copy"], model)
    pipe = VideoBERTPipeline.from_pretrained(model, device="cpu")
    settings = pipe.settings
    for name, root in (("msrvtt", msrvtt_root), ("youcook2", youcook2_root)):
        data = tmp_path / name
        assert run_cli("prepare", name, root, "-o", data).returncode == 0
        if name == "msrvtt":
            segments = [json.loads(line) for line in (data / "segments.jsonl").read_text().splitlines()]
            assert [s["video_id"] for s in segments if s["split"] == "test"] == ["video4", "video5", "video6"]
            assert all(s["start"] == 0 for s in segments) and json.loads(
                (data / "missing.jsonl").read_text())["video_id"] == "video99"
        features, tokens = tmp_path / f"{name}-features", tmp_path / f"{name}-tokens"
        extract = run_cli("extract", data / "manifest.jsonl", "-o", features, "--fps", settings["fps"], "--clip-frames",
                          settings["clip_frames"], "--size", settings["size"], "--precision", settings["precision"],
                          "--device", "cpu", timeout=900)
        assert extract.returncode == 0, extract.stderr
        assert run_cli("tokenize", features, "--vocab", model / "visual_vocab", "-o", tokens, "--device", "cpu").returncode == 0
        out = tmp_path / f"{name}-eval"
        result = run_cli("evaluate", model, "--segments", data / "segments.jsonl", "--tokens", tokens, "--split", "test",
                         "-o", out, "--device", "cpu")
        assert result.returncode == 0, result.stderr
        assert "beside published figures" in result.stdout and "what differs: our S3D is randomly initialised" in result.stdout
        metrics = json.loads((out / "metrics.json").read_text())
        gallery = [s for s in map(json.loads, (data / "segments.jsonl").read_text(encoding="utf-8").splitlines())
                   if s["split"] == "test"]
        assert metrics["gallery"] == len(gallery) - sum(metrics["left_out"].values()) >= 3
        if name == "youcook2":
            assert set(metrics["zero_shot"]) <= {"verb", "object"} and metrics["zero_shot"]
            assert "verb@5" in result.stdout and "VideoBERT (cross modal)" in result.stdout
        else:
            assert "MIL-NCE" in result.stdout
        assert metrics["t2v"]["chance_r1"] == pytest.approx(1 / metrics["gallery"])
    recorded = json.loads((model / "evaluation.json").read_text())
    assert {"corpus/test", "msrvtt-1k-a/test", "youcook2/test"} <= set(recorded)  # the corpus's own entry is kept
    assert recorded["youcook2/test"]["benchmark"] == "youcook2" and recorded["youcook2/test"]["segments"].endswith("segments.jsonl")


def test_evaluate_on_segments_equals_the_score_matrix_of_the_same_gallery(portable_model, tmp_path):
    """The retrieval metrics of evaluate --segments against a reference: the alignment scores of
    every (sentence, segment) pair computed one by one from the model folder."""
    from videobert import VideoBERTPipeline
    from videobert.corpus.align import overlapping_clips

    model = tmp_path / "model"
    shutil.copytree(portable_model["copy"], model)
    pipe = VideoBERTPipeline.from_pretrained(model, device="cpu")
    index = pipe.open_index()
    segments = [s for s in index.segments() if s["text"]]
    data = tmp_path / "data"
    data.mkdir()
    (data / "segments.jsonl").write_text("".join(
        json.dumps({"video_id": s["video_id"], "start": s["start"], "end": s["end"], "sentence": s["text"], "split": "test"}) + "\n"
        for s in segments))
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    video_words = {video_id: portable_model["tokens"][video_id] for video_id in index.video_ids()}
    for video_id, words in video_words.items():
        np.save(tokens / f"{video_id}.npy", words.astype(np.int32))
    (tokens / "tokens.json").write_text(json.dumps({"vocab_size": pipe.loaded.layout.visual_vocab_size, "fps": 10,
                                                    "clip_frames": 15, "clip_seconds": 1.5}))
    out = tmp_path / "eval"
    assert run_cli("evaluate", model, "--segments", data / "segments.jsonl", "--tokens", tokens, "-o", out,
                   "--device", "cpu").returncode == 0
    metrics = json.loads((out / "metrics.json").read_text())
    words = [video_words[s["video_id"]][list(overlapping_clips(s["start"], s["end"], len(video_words[s["video_id"]]), 1.5))]
             for s in segments]
    scores = np.array([[pipe.score(s["text"], w)[0, 0] for w in words] for s in segments])
    for direction, matrix in (("t2v", scores), ("v2t", scores.T)):
        reference = retrieval_metrics(matrix)
        assert {k: metrics[direction][k] for k in reference} == pytest.approx(reference)
