"""Two-stage search: the dual encoder (videobert distil), the INDEX folder that grows by parts, the
first stage on faiss and the cross-encoder re-ranking its K best; tampered indexes refused; killed
and rerun, the same files."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import faiss
import numpy as np
import pytest

from tests.conftest import REPO, run_cli
from videobert.dual import load_dual
from videobert.errors import ConfigError, InputError
from videobert.index.folder import META_FILE, open_index, part_dir, remove_videos, to_ivf, write_part
from videobert.index.stage import IndexConfig, cut_segments, index_meta, make_part
from videobert.inference import load_model
from videobert.search import Searcher, segments_index


@pytest.fixture(scope="module")
def model(portable_model):
    loaded = load_model(portable_model["copy"], "cpu")
    dual = load_dual(portable_model["copy"], loaded)
    assert dual is not None, "videobert run distils by default"
    videos = [(e.video_id, str(e.video), portable_model["tokens"][e.video_id]) for e in portable_model["manifest"]]
    return {"loaded": loaded, "dual": dual, "videos": videos, "dir": portable_model["copy"]}


def build(folder, model, groups, kind="flat", window=4):
    """An index of ``groups`` of (id, path, words) videos, one part per group, as videobert index writes it."""
    folder.mkdir(parents=True)
    meta = index_meta(model["loaded"], model["dual"], 1.5, window, None, IndexConfig(kind=kind))
    (folder / META_FILE).write_text(json.dumps(meta))
    for number, group in enumerate(groups):
        write_part(folder, number, make_part(model["dual"], group, 1.5, window, None), model["dual"].identity, None)
    return folder


def test_distil_records_its_val_figures_and_makes_the_test_segments_searchable(portable_model):
    dual = json.loads((portable_model["copy"] / "dual" / "dual.json").read_text())
    assert dual["split"] == "val" and dual["k"] in (4, 8, 16, 32, 64, 128, 256) or dual["k"] == dual["gallery"]
    for direction in ("t2v", "v2t"):
        assert 0 <= dual["dual"][direction]["r5"] <= 1 and dual["dual"][direction]["chance_r5"] > 0
    largest = dual["two_stage"][max(dual["two_stage"], key=int)]
    assert largest["first_stage_recall"]["t2v"] == 1.0  # K = the whole gallery finds every true segment
    assert largest["t2v"] == {k: v for k, v in dual["exhaustive"]["t2v"].items() if not k.startswith("chance")}
    index = open_index(portable_model["copy"] / "test_index")
    assert index.live_rows == portable_model["metrics"]["gallery"] or index.live_rows >= 2
    assert "## Search" in (portable_model["copy"] / "README.md").read_text()


@pytest.mark.parametrize("clips, window, stride, expected", [
    (10, 4, 2, [(0, 4), (2, 6), (4, 8), (6, 10)]),  # overlapping by default (stride = window / 2)
    (11, 4, 2, [(0, 4), (2, 6), (4, 8), (6, 10), (8, 11)]),  # the tail is covered
    (10, 4, 4, [(0, 4), (4, 8), (8, 10)]),  # stride = window: side by side
    (3, 4, 2, [(0, 3)]),  # shorter than a window: one segment
])
def test_a_video_without_transcript_is_cut_into_windows_that_cover_it(clips, window, stride, expected):
    words = np.arange(clips, dtype=np.int32)
    segments = cut_segments(words, 1.5, window, stride, None)
    assert [(round(s / 1.5), round(e / 1.5)) for s, e, _, _ in segments] == expected
    assert all(np.array_equal(w, words[round(s / 1.5):round(e / 1.5)]) for s, e, _, w in segments)
    listed = [{"start": 0.0, "end": 3.0, "sentence": "first"}, {"start": 90.0, "end": 99.0, "sentence": "past the end"}]
    assert [(s, e, t) for s, e, t, _ in cut_segments(words, 1.5, window, stride, listed)] == [(0.0, 3.0, "first")]


def test_a_query_is_one_faiss_search_and_k_cross_encoder_pairs(model, tmp_path, monkeypatch):
    import videobert.search as search

    index = open_index(build(tmp_path / "index", model, [model["videos"]]))
    searcher = Searcher(model["loaded"], model["dual"], index)
    scored = []
    real = search.score_pairs

    def counting(loaded, texts, videos, pairs, progress=None):
        scored.append(len(pairs))
        return real(loaded, texts, videos, pairs, progress)

    monkeypatch.setattr(search, "score_pairs", counting)
    hits = searcher.search("now the red circle moves left", top_k=3, k=5)
    assert scored == [5] and len(hits) == 3
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].score >= hits[1].score >= hits[2].score
    assert all(h.first_stage is not None for h in hits)
    # K as large as the index: the two stages rank every segment as the cross-encoder alone does
    everything = searcher.search("now the red circle moves left", top_k=5, k=index.rows)
    exhaustive = searcher.search("now the red circle moves left", top_k=5, exhaustive=True)
    assert [(h.row, round(h.score, 6)) for h in everything] == [(h.row, round(h.score, 6)) for h in exhaustive]


def test_adding_videos_in_parts_gives_the_index_of_one_build(model, tmp_path):
    videos = model["videos"]
    once = open_index(build(tmp_path / "once", model, [videos]))
    parts = open_index(build(tmp_path / "parts", model, [videos[:3], videos[3:5], videos[5:]]))
    assert len(parts.parts) == 3 and parts.rows == once.rows
    assert np.array_equal(faiss.serialize_index(parts.vectors), faiss.serialize_index(once.vectors))
    assert parts.segments() == once.segments()
    # the same in memory, from the segments themselves
    memory = segments_index(model["dual"], model["loaded"], once.segments())
    assert np.array_equal(faiss.serialize_index(memory.vectors), faiss.serialize_index(once.vectors))


def test_an_ivf_index_searched_exhaustively_finds_what_the_flat_one_finds(model, tmp_path):
    folder = build(tmp_path / "index", model, [model["videos"][:4], model["videos"][4:]], window=2)
    flat = open_index(folder)
    to_ivf(folder, nprobe=1_000)
    ivf = open_index(folder)
    assert ivf.meta["kind"] == "ivf" and len(list(folder.glob("parts/*/lists.npy"))) == 2
    assert not list(folder.glob("parts/*/*.faiss"))  # a part holds vectors and lists, never a quantiser of its own
    vectors = flat.vectors.reconstruct_n(0, 3)  # the first segments' own vectors as queries
    scores, rows = flat.search(vectors, 5)
    ivf_scores, ivf_rows = ivf.search(vectors, 5)
    np.testing.assert_array_equal(rows, ivf_rows)
    np.testing.assert_allclose(scores, ivf_scores, rtol=1e-5)


def test_a_conversion_to_ivf_cut_short_reads_as_flat_and_its_rerun_writes_the_files_of_one(model, tmp_path,
                                                                                                monkeypatch):
    import videobert.index.folder as folder_module

    videos = model["videos"]
    whole = build(tmp_path / "whole", model, [videos[:4], videos[4:]], window=2)
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    to_ivf(whole, nprobe=4)
    flat = open_index(cut)
    real = folder_module.atomic_write_json

    def killed(path, data):  # every part's lists written, index.json not yet
        raise KeyboardInterrupt

    monkeypatch.setattr(folder_module, "atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        to_ivf(cut, nprobe=4)
    monkeypatch.setattr(folder_module, "atomic_write_json", real)
    assert (part_dir(cut, 1) / "lists.npy").is_file()
    again = open_index(cut)  # read as before: flat, the same vectors
    assert again.meta["kind"] == "flat"
    assert np.array_equal(faiss.serialize_index(again.vectors), faiss.serialize_index(flat.vectors))
    to_ivf(cut, nprobe=4)
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(cut) for p in cut.rglob("*") if p.is_file())
    for name in files:
        assert (whole / name).read_bytes() == (cut / name).read_bytes(), name


def test_parts_added_to_an_ivf_index_give_the_ivf_of_one_conversion(model, tmp_path):
    videos = model["videos"]
    once = build(tmp_path / "once", model, [videos[:4], videos[4:]], window=2)
    to_ivf(once, nprobe=4)  # both parts written flat, then given lists
    grown = tmp_path / "grown"  # the same IVF, both parts added to it afterwards
    grown.mkdir()
    shutil.copy(once / META_FILE, grown / META_FILE)
    shutil.copy(once / "ivf.faiss", grown / "ivf.faiss")
    template = faiss.read_index(str(once / "ivf.faiss"))
    for number, group in enumerate([videos[:4], videos[4:]]):
        write_part(grown, number, make_part(model["dual"], group, 1.5, 2, None), model["dual"].identity, template)
    for number in (0, 1):
        for name in ("lists.npy", "vectors.npy", "part.json"):
            assert (part_dir(once, number) / name).read_bytes() == (part_dir(grown, number) / name).read_bytes(), name
    a, b = open_index(once), open_index(grown)
    assert b.vectors.ntotal == a.vectors.ntotal == a.rows
    assert np.array_equal(faiss.serialize_index(a.vectors), faiss.serialize_index(b.vectors))


def test_removed_videos_are_not_found_and_are_named_when_unknown(model, tmp_path):
    folder = build(tmp_path / "index", model, [model["videos"]])
    gone = model["videos"][0][0]
    removed, unknown = remove_videos(folder, [gone, "nowhere"])
    assert removed > 0 and unknown == ["nowhere"]
    index = open_index(folder)
    assert gone not in index.video_ids() and index.live_rows == index.rows - removed
    hits = Searcher(model["loaded"], model["dual"], index).search("the red circle", top_k=index.live_rows,
                                                                   k=index.live_rows)
    assert gone not in {h.video_id for h in hits} and len(hits) == index.live_rows


def test_a_tampered_or_mismatched_index_is_refused_naming_the_file(model, tmp_path):
    folder = build(tmp_path / "index", model, [model["videos"][:4], model["videos"][4:]])

    other = tmp_path / "other"
    shutil.copytree(folder, other)
    meta = json.loads((other / META_FILE).read_text())
    (other / META_FILE).write_text(json.dumps({**meta, "dual": "0" * 64}))
    with pytest.raises(InputError, match=r"part.json: a part of another index"):
        open_index(other)
    for number in (0, 1):
        info = json.loads((part_dir(other, number) / "part.json").read_text())
        (part_dir(other, number) / "part.json").write_text(json.dumps({**info, "dual": "0" * 64}))
    with pytest.raises(InputError, match=r"index.json: vectors of another dual encoder"):
        Searcher(model["loaded"], model["dual"], open_index(other))

    truncated = tmp_path / "truncated"
    shutil.copytree(folder, truncated)
    vectors = part_dir(truncated, 1) / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-100])
    with pytest.raises(InputError, match=r"part-000001/vectors.npy"):
        open_index(truncated)
    nan = tmp_path / "nan"  # refused before an IVF is trained on it, too
    shutil.copytree(folder, nan)
    bad = np.load(part_dir(nan, 0) / "vectors.npy")
    bad[0, 0] = np.nan
    np.save(part_dir(nan, 0) / "vectors.npy", bad)
    with pytest.raises(InputError, match=r"part-000000/vectors.npy: segment vectors hold NaN"):
        to_ivf(nan, nprobe=4)
    assert not (nan / "ivf.faiss").exists()

    ivf = tmp_path / "ivf"
    shutil.copytree(folder, ivf)
    to_ivf(ivf, nprobe=4)
    lists = part_dir(ivf, 1) / "lists.npy"
    np.save(lists, np.load(lists) + 10_000)
    with pytest.raises(InputError, match=r"part-000001/lists.npy: list numbers outside"):
        open_index(ivf)
    np.save(lists, np.load(lists)[:-1] - 10_000)
    with pytest.raises(InputError, match=r"part-000001/lists.npy: integer \["):
        open_index(ivf)
    info = json.loads((part_dir(ivf, 0) / "part.json").read_text())
    (part_dir(ivf, 0) / "part.json").write_text(json.dumps({**info, "ivf": "0" * 64}))
    with pytest.raises(InputError, match=r"part-000000/part.json: its vectors were given the lists of another IVF"):
        open_index(ivf)
    retrained = faiss.read_index(str(ivf / "ivf.faiss"))
    retrained.nprobe = 7  # another IVF's bytes
    faiss.write_index(retrained, str(ivf / "ivf.faiss"))
    with pytest.raises(InputError, match=r"ivf.faiss: not the IVF index.json records"):
        open_index(ivf)

    older = tmp_path / "older"  # format 2: its flat parts are read as they are, its IVF parts are not
    shutil.copytree(folder, older)
    meta = json.loads((older / META_FILE).read_text())
    (older / META_FILE).write_text(json.dumps({**meta, "format": 2}))
    assert open_index(older).rows == open_index(folder).rows
    (older / META_FILE).write_text(json.dumps({**meta, "format": 2, "kind": "ivf", "nlist": 4}))
    with pytest.raises(InputError, match=r"index.json: an index of format 2 \(kind 'ivf'\).*index the videos again"):
        open_index(older)

    shorter = tmp_path / "shorter"
    shutil.copytree(folder, shorter)
    start = part_dir(shorter, 0) / "segments" / "start.npy"
    np.save(start, np.load(start)[:-1])
    with pytest.raises(InputError, match=r"part-000000/segments"):
        open_index(shorter)

    words = tmp_path / "words"
    shutil.copytree(folder, words)
    values = part_dir(words, 0) / "segments" / "words.values.npy"
    bad = np.load(values)
    bad[0] = -3
    np.save(values, bad)
    with pytest.raises(InputError, match=r"words.values.npy: visual words outside"):
        open_index(words)


INDEX_KILLER = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import videobert.index.stage as stage
real, calls = stage.write_part, []
def write_part(*args, **kwargs):  # kill -9 after the second part of the add is written
    path = real(*args, **kwargs)
    calls.append(path)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
stage.write_part = write_part
from pipelines.index import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_add_killed_midway_and_rerun_writes_the_files_of_one_add(portable_model, tmp_path):
    from videobert.manifest import write_manifest

    manifest, first = tmp_path / "all.jsonl", tmp_path / "first.jsonl"
    write_manifest(manifest, portable_model["manifest"])
    write_manifest(first, portable_model["manifest"][:2])
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    args = ["--device", "cpu", "--videos-per-part", "2", "--kind", "ivf", "-q"]
    # an index of two videos (an IVF from the start), then an add of the rest
    assert run_cli("index", portable_model["copy"], first, "-o", whole, *args).returncode == 0
    shutil.copytree(whole, killed)
    done = run_cli("index", portable_model["copy"], manifest, "-o", whole, *args)
    assert done.returncode == 0, done.stderr
    code = subprocess.run([sys.executable, "-c", INDEX_KILLER.format(repo=str(REPO)), str(portable_model["copy"]),
                           str(manifest), "-o", str(killed), *args], capture_output=True, text=True, timeout=600)
    assert code.returncode == -signal.SIGKILL, code.stderr[-2000:]
    assert (killed / "adding.json").is_file()
    again = run_cli("index", portable_model["copy"], manifest, "-o", killed, *args)
    assert again.returncode == 0, again.stderr
    def files(folder):  # less the locks (they hold the writer's pid)
        return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock"))

    assert files(whole) == files(killed) and len(files(whole)) > 10 and (whole / "ivf.faiss").is_file()
    assert len(list(whole.glob("parts/*/lists.npy"))) == len(list(whole.glob("parts/*/vectors.npy"))) > 2
    for name in files(whole):
        assert (whole / name).read_bytes() == (killed / name).read_bytes(), name


DISTIL_KILLER = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from videobert.distil import train
real = train.Distiller.step
def step(self, number):  # kill -9 after the checkpoint of step 10, inside step 16
    if number == 15:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, number)
train.Distiller.step = step
from pipelines.distil import main
sys.exit(main(sys.argv[1:]))
"""


def test_distil_killed_and_resumed_writes_the_files_of_one_run(eval_demo_run, tmp_path):
    args = ["--corpus", str(eval_demo_run["corpus"]), "--steps", "20", "--save-every", "10", "--batch-size", "8",
            "--warmup", "2", "--hard-negatives", "2", "--mine-every", "5", "--device", "cpu", "-q"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    own = (eval_demo_run["run"] / "dual" / "model.safetensors").read_bytes()
    done = run_cli("distil", eval_demo_run["run"], "-o", whole, *args)
    assert done.returncode == 0, done.stderr
    code = subprocess.run([sys.executable, "-c", DISTIL_KILLER.format(repo=str(REPO)), str(eval_demo_run["run"]), "-o",
                           str(killed), *args], capture_output=True, text=True, timeout=600)
    assert code.returncode == -signal.SIGKILL, code.stderr[-2000:]
    assert not (killed / "model.safetensors").exists() and (killed / "checkpoints" / "step-00000010").is_dir()
    refused = run_cli("distil", eval_demo_run["run"], "-o", killed, *args)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    again = run_cli("distil", eval_demo_run["run"], "-o", killed, *args, "--resume")
    assert again.returncode == 0, again.stderr
    for name in ("model.safetensors", "config.json", "dual.json"):
        assert (whole / name).read_bytes() == (killed / name).read_bytes(), name
    # a dual encoder written elsewhere leaves the model folder's own as it was
    assert (eval_demo_run["run"] / "dual" / "model.safetensors").read_bytes() == own


def test_hard_negatives_are_the_videos_the_student_ranks_highest_for_other_texts(eval_demo_run):
    import torch

    from videobert.distil.train import Distiller, DistilOptions, distil_loss
    from videobert.dual import DualEncoder, text_vectors, video_vectors
    from videobert.retrieval.gallery import corpus_gallery

    teacher = load_model(eval_demo_run["run"], "cpu")
    train = corpus_gallery(eval_demo_run["corpus"], "train", None)
    options = DistilOptions(hard_negatives=2, batch_size=4)
    student = DualEncoder.from_videobert(teacher.model, options.dim, options.shared, options.pooling)
    distiller = Distiller(student, teacher, options, train.texts, train.videos)
    distiller.mine()
    scores = text_vectors(student, teacher, train.texts) @ video_vectors(student, teacher, train.videos).T
    for row in range(len(train.texts)):
        others = [c for c in np.argsort(-scores[row], kind="stable")
                  if not np.array_equal(train.texts[c], train.texts[row])]
        mined = distiller.mined[row].tolist()
        assert row not in mined and set(mined) <= set(others[:4])  # the best two (ties may swap)
        np.testing.assert_allclose(sorted(scores[row, mined]), sorted(scores[row, others[:2]]), rtol=1e-5)
    rows = np.array([0, 1, 2, 3])
    columns = distiller.columns(rows)
    assert list(columns[:4]) == [0, 1, 2, 3] and len(set(columns)) == len(columns) > 4
    # the mined columns are negatives of every text: a student that ranks them high pays for it
    square = torch.eye(4) * 0.9
    low = torch.cat([square, torch.full((4, len(columns) - 4), -0.5)], 1)
    high = torch.cat([square, torch.full((4, len(columns) - 4), 0.8)], 1)
    unit = DistilOptions(temperature=1.0)
    assert distil_loss(high, None, unit)[0] > distil_loss(low, None, unit)[0] > distil_loss(square, None, unit)[0]


def test_an_index_made_before_windows_overlapped_is_added_to_only_with_its_own_stride(model, tmp_path):
    from videobert.index.stage import claim_index_dir

    folder = build(tmp_path / "index", model, [model["videos"][:1]], window=4)
    meta = json.loads((folder / META_FILE).read_text())
    del meta["stride"]  # as an index of the earlier format records it: windows one after another
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"another stride \(4, this run 2\); add to it with --stride 4"):
        claim_index_dir(folder, index_meta(model["loaded"], model["dual"], 1.5, 4, None, IndexConfig()))
    assert claim_index_dir(folder, index_meta(model["loaded"], model["dual"], 1.5, 4, None, IndexConfig(stride=4)))
