"""Round two of what hostile files and careless users do (docs/robustness.md, second table): each
test is one case that ended in data loss, a hang, an unnamed error or a silent wrong result, and
asserts what it gets now. The readers themselves are tested kind by kind in tests/test_readers.py.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.eval_data import make_learnable_corpus
from videobert.errors import ConfigError, InputError, StageError

pytestmark = pytest.mark.timeout(240)


def one_line_naming(exc: BaseException, *words: str) -> str:
    message = str(exc)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


# ----------------------------------------------------------------------------------- runner and prune
def runner(tmp_path: Path):
    from tests.test_pipeline import make

    return make(tmp_path)[0]


def run_folder(tmp_path: Path, previous: list[str] | None = None) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    state = {"stages": {}, "config": {}}
    if previous is not None:
        state["previous"] = previous
    (run / "pipeline.json").write_text(json.dumps(state))
    return run


def test_prune_never_deletes_through_a_linked_previous(tmp_path):
    from videobert.runner import prune

    victim = tmp_path / "victim"
    (victim / "thesis").mkdir(parents=True)
    (victim / "thesis" / "chapter1.tex").write_text("years of work")
    run = run_folder(tmp_path)
    (run / ".previous").symlink_to("../victim")
    with pytest.raises(ConfigError) as caught:
        prune(run)
    one_line_naming(caught.value, ".previous", "nothing was deleted")
    assert (victim / "thesis" / "chapter1.tex").read_text() == "years of work"


def test_prune_deletes_only_the_folders_the_runner_set_aside(tmp_path):
    from videobert.runner import prune

    run = run_folder(tmp_path, previous=["evaluate-20240101-120000"])
    previous = run / ".previous"
    for name in ("evaluate-20240101-120000", "old_thesis", "vocab-20240101-120000"):
        (previous / name).mkdir(parents=True)
        (previous / name / "file").write_text(name)
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (previous / "pretrain-20240101-120000").symlink_to(outside)
    deleted = prune(run)
    assert [path.name for path, _ in deleted] == ["evaluate-20240101-120000"]
    assert sorted(p.name for p in previous.iterdir()) == ["old_thesis", "pretrain-20240101-120000", "vocab-20240101-120000"]
    assert (outside / "keep").is_dir()
    assert json.loads((run / "pipeline.json").read_text())["previous"] == []


def test_prune_refuses_a_pipeline_json_it_cannot_read(tmp_path):
    from videobert.runner import prune

    run = run_folder(tmp_path)
    (run / "pipeline.json").write_text("not JSON at all")
    (run / ".previous" / "evaluate-20240101-120000").mkdir(parents=True)
    with pytest.raises(InputError) as caught:
        prune(run)
    one_line_naming(caught.value, "pipeline.json", "nothing was deleted")
    assert (run / ".previous" / "evaluate-20240101-120000").is_dir()


def test_a_second_run_or_a_prune_is_refused_while_a_run_holds_the_folder(tmp_path):
    from videobert.runner import LOCK_FILE, prune
    from videobert.store import FolderLock

    first = runner(tmp_path)
    first.run()
    lock = FolderLock(tmp_path / "run" / LOCK_FILE)  # a run in progress
    try:
        before = (tmp_path / "run" / "pipeline.json").read_text()
        second = runner(tmp_path)
        with pytest.raises(StageError, match="another run is writing into this folder"):
            second.run(force=["extract"])
        with pytest.raises(StageError, match="another run is writing into this folder"):
            prune(tmp_path / "run")
        assert (tmp_path / "run" / "pipeline.json").read_text() == before
        assert not (tmp_path / "run" / ".previous").exists()
    finally:
        lock.release()
    runner(tmp_path).run(force=["evaluate"])  # once the first is done, the next one runs


def test_a_users_configs_folder_is_refused_not_overwritten(tmp_path):
    configs = tmp_path / "run" / "configs"
    configs.mkdir(parents=True)
    (configs / "extract.yaml").write_text("my own notes\n")
    with pytest.raises(ConfigError, match="not empty \\(configs\\) and not a run folder"):
        runner(tmp_path).run()
    assert (configs / "extract.yaml").read_text() == "my own notes\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["configs"]


def test_a_pipeline_json_of_the_wrong_shape_is_one_named_error(tmp_path):
    run = run_folder(tmp_path)
    (run / "pipeline.json").write_text(json.dumps({"stages": ["extract"]}))
    with pytest.raises(InputError) as caught:
        runner(tmp_path).run()
    one_line_naming(caught.value, "pipeline.json", "stages")


# ----------------------------------------------------------------------------------- a model folder
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_learnable_corpus(tmp_path_factory.mktemp("data"), videos=8, seed=1)


@pytest.fixture
def model_dir(corpus, tmp_path) -> Path:
    """An untrained tiny model folder (weights, config.json, vocabulary.json, tokenizer/)."""
    import torch

    from videobert.corpus.joint_vocab import JointVocabulary
    from videobert.model import ModelConfig, VideoBERT

    vocab = JointVocabulary.load(corpus)
    torch.manual_seed(0)
    model = VideoBERT(ModelConfig.preset("tiny", vocab.text_vocab_size, vocab.visual_vocab_size, max_positions=64))
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    vocab.save(folder)
    return folder


@pytest.mark.parametrize("field, value", [("layers", 100000), ("heads", 0), ("dropout", 2.5),
                                          ("layer_norm_eps", "abc"), ("hidden_size", 128.0)])
def test_config_json_fields_are_checked_before_anything_is_built(model_dir, field, value):
    from videobert.model import VideoBERT

    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, field: value}))
    began = time.perf_counter()
    with pytest.raises(InputError) as caught:
        VideoBERT.from_pretrained(model_dir)
    assert time.perf_counter() - began < 10
    assert str(caught.value).startswith(f"{model_dir / 'config.json'}: {field}: "), str(caught.value)
    one_line_naming(caught.value)


def test_a_captioner_config_json_is_checked_field_by_field(tmp_path):
    from videobert.caption.model import Captioner, CaptionerConfig

    folder = tmp_path / "captioner"
    Captioner(CaptionerConfig([8], 20, 1, 2, 0, hidden_size=16, heads=2, intermediate_size=32)).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "heads": 0}))
    with pytest.raises(InputError, match=r"config\.json: heads: 0 is out of range"):
        Captioner.from_pretrained(folder)


@pytest.mark.parametrize("damage", ["nan", "zeros", "integers"])
def test_weights_holding_nan_zeros_or_integers_are_refused(model_dir, damage):
    import torch
    from safetensors.torch import load_file, save_file

    from videobert.model import VideoBERT

    path = model_dir / "model.safetensors"
    state = load_file(str(path))
    if damage == "nan":
        state["embeddings.word.weight"][3, 0] = float("nan")
    elif damage == "zeros":
        state = {name: torch.zeros_like(tensor) for name, tensor in state.items()}
    else:
        state["embeddings.word.weight"] = state["embeddings.word.weight"].to(torch.int32)
    save_file(state, str(path))
    with pytest.raises(InputError) as caught:
        VideoBERT.from_pretrained(model_dir)
    one_line_naming(caught.value, str(path))


def test_a_fifo_or_dev_zero_config_yaml_in_a_model_folder_is_refused(model_dir):
    from videobert.inference import load_model

    os.mkfifo(model_dir / "config.yaml")
    with pytest.raises(InputError) as caught:
        load_model(model_dir, device="cpu")
    one_line_naming(caught.value, "config.yaml", "FIFO")
    (model_dir / "config.yaml").unlink()
    (model_dir / "config.yaml").symlink_to("/dev/zero")
    with pytest.raises(InputError, match="config.yaml: training config is not a regular file"):
        load_model(model_dir, device="cpu")
    (model_dir / "config.yaml").unlink()
    (model_dir / "config.yaml").write_text("max_len: abc\n")
    with pytest.raises(InputError, match=r"config\.yaml: max_len: \"abc\" is not a whole number"):
        load_model(model_dir, device="cpu")


def test_a_fifo_or_deep_yaml_given_as_config_is_refused(tmp_path):
    from videobert import config as cfgmod
    from videobert.runner import RunConfig

    fifo = tmp_path / "run.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="run.yaml: config file is not a regular file \\(it is a FIFO\\)"):
        cfgmod.load(RunConfig, fifo)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml: nested more than 100 levels deep"):
        cfgmod.load(RunConfig, deep)


def test_a_codebook_of_another_size_than_the_vocabulary_is_refused(model_dir):
    from tests.test_vocab import identity_codebook, random_tree
    from videobert.inference import load_model

    codebook = identity_codebook(random_tree(np.random.default_rng(0), 3, 2, 8), 2)
    (model_dir / "visual_vocab").mkdir()
    codebook.save(model_dir / "visual_vocab" / "codebook.npz")
    with pytest.raises(InputError) as caught:
        load_model(model_dir, device="cpu")
    one_line_naming(caught.value, "codebook.npz", f"a codebook of {codebook.size} visual words", "vocabulary.json")


def test_special_token_strings_in_text_are_text_and_template_slots_stay_slots(corpus):
    from videobert.corpus.joint_vocab import JointVocabulary

    vocab = JointVocabulary.load(corpus)
    structural = {vocab.pad_id, vocab.cls_id, vocab.sep_id, vocab.mask_id}
    ids = vocab.encode_text("[SEP] [CLS] [MASK] [PAD] hello")
    assert ids and not structural.intersection(ids)
    template = vocab.encode_template("now let's [MASK] the [MASK].")
    assert template.count(vocab.mask_id) == 2 and not {vocab.pad_id, vocab.cls_id, vocab.sep_id}.intersection(template)
    assert vocab.encode_template("[SEP] then [MASK]").count(vocab.sep_id) == 0


# ----------------------------------------------------------------------------------- codebook and arrays
def test_a_codebook_with_an_extra_member_or_a_lying_header_is_refused_before_it_is_read(tmp_path):
    import tracemalloc

    from tests.test_vocab import identity_codebook, random_tree
    from videobert.vocab.codebook import Codebook

    path = tmp_path / "codebook.npz"
    identity_codebook(random_tree(np.random.default_rng(0), 3, 2, 8), 2).save(path)
    good = path.read_bytes()
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("evil.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": (16 << 20,)})
            for _ in range(16):
                member.write(bytes(8 << 20))
    tracemalloc.start()
    with pytest.raises(InputError, match=r"codebook.npz: not a codebook \(unexpected member 'evil'\)"):
        Codebook.load(path, device="cpu")
    assert tracemalloc.get_traced_memory()[1] < 32 << 20
    tracemalloc.stop()
    path.write_bytes(good)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = {"descr": "<f4", "fortran_order": False, "shape": (10 ** 6, 10 ** 6)}
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    members["centroids.npy"] = buffer.getvalue() + bytes(64)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(InputError) as caught:
        Codebook.load(path, device="cpu")
    one_line_naming(caught.value, "codebook.npz[centroids]", "1000000, 1000000")


def test_features_over_the_array_cap_fail_that_video_only_in_vocab_and_tokenize(tmp_path, monkeypatch):
    from videobert import readers
    from videobert.vocab import TokenizeConfig, VocabConfig
    from videobert.vocab import stage as vocab_stage

    monkeypatch.setattr(readers, "MAX_ARRAY_BYTES", 1 << 20)  # as a 2 TB sparse file against the 4 GiB cap
    features = tmp_path / "features"
    features.mkdir()
    rng = np.random.default_rng(0)
    for index in range(1, 6):
        np.save(features / f"v{index}.npy", rng.standard_normal((20, 1024)).astype(np.float16))
    sparse = features / "v0.npy"
    with open(sparse, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f2", "fortran_order": False, "shape": (4096, 1024)})
        handle.truncate(handle.tell() + 4096 * 1024 * 2)  # the header agrees with the size; the file is a hole
    summary = vocab_stage.run(features, tmp_path / "vocab", VocabConfig(k=2, depth=2, min_points_per_centroid=1,
                                                                        exemplars=False, device="cpu",
                                                                        flat_compare_max_words=0))
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "vocab" / "failures.jsonl").read_text().splitlines())}
    assert summary.failed == 1 and records["v0"]["reason"].startswith(f"{sparse}: features of [4096, 1024] float16")
    tokens = vocab_stage.run_tokenize(features, tmp_path / "vocab", tmp_path / "tokens", TokenizeConfig(device="cpu"))
    assert tokens.failed == 1 and tokens.done == 5


# ----------------------------------------------------------------------------------- text and metadata
@pytest.fixture
def small(tmp_path):
    root = make_learnable_corpus(tmp_path / "data", videos=8, seed=1).parent
    entries = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    return {"root": root, "manifest": root / "manifest.jsonl", "tokens": root / "tokens", "entries": entries}


def build_corpus(small, out: Path):
    from videobert import corpus as corpus_stage

    return corpus_stage.run(small["manifest"], small["tokens"], out, corpus_stage.CorpusConfig())


def test_an_integer_of_5000_digits_in_a_transcript_fails_that_video_only(small, tmp_path):
    victim = small["entries"][0]
    transcript = small["root"] / "giant.json"
    transcript.write_text('{"start": [' + "1" * 5000 + '], "end": [2], "text": ["hello"]}')
    victim["transcript"] = transcript.name
    small["manifest"].write_text("".join(json.dumps(e) + "\n" for e in small["entries"]))
    summary = build_corpus(small, tmp_path / "corpus")
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "corpus" / "failures.jsonl").read_text().splitlines())}
    assert list(records) == [victim["video_id"]] and "4300 digits" in records[victim["video_id"]]["reason"]
    assert summary.done == len(small["entries"]) - 1


def test_an_integer_of_5000_digits_in_a_manifest_is_a_named_error(tmp_path):
    from videobert.manifest import read_manifest

    path = tmp_path / "manifest.jsonl"
    path.write_text('{"video_id": "a", "video": "a.mp4", "n": ' + "9" * 5000 + "}\n")
    with pytest.raises(InputError, match=r"manifest\.jsonl:1: invalid JSON \(an integer of more than 4300 digits\)"):
        read_manifest(path)


def test_one_cue_cut_into_thousands_of_sentences_is_capped_and_counted(small, tmp_path):
    victim = small["entries"][2]
    transcript = small["root"] / victim["transcript"]
    transcript.write_text("WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n" + "Stir it. " * 5000 + "\n")
    build_corpus(small, tmp_path / "corpus")
    summary = json.loads((tmp_path / "corpus" / "summary.json").read_text())
    from videobert.corpus import load_corpus

    mine = [e for split in ("train", "val", "test") for e in load_corpus(tmp_path / "corpus", split)
            if e["video_id"] == victim["video_id"]]
    assert 0 < len(mine) <= 4 * 3  # the cue's 3 s touch 3 clips of 1.5 s: at most 4 sentences each
    assert summary["dropped_sentences"]["over_clips"] >= 5000 - 4 * 3 - 2


@pytest.mark.parametrize("bad", [0, float("nan"), "abc", -1.5])
def test_a_clip_length_that_is_no_length_is_refused_with_the_file(small, tmp_path, bad):
    from videobert.corpus.reader import corpus_visual_words

    build_corpus(small, tmp_path / "corpus")
    path = tmp_path / "corpus" / "summary.json"
    summary = json.loads(path.read_text())
    path.write_text(json.dumps({**summary, "clip_seconds": bad}))
    with pytest.raises(InputError) as caught:
        corpus_visual_words(tmp_path / "corpus")
    one_line_naming(caught.value, str(path), "clip_seconds")


@pytest.mark.parametrize("content", ["[1, 2]", '{"fps": "abc", "clip_frames": 30}', '{"clip_seconds": 0}'])
def test_feature_settings_of_the_wrong_shape_are_named(tmp_path, content):
    from videobert.features.settings import require_clip_seconds
    from videobert.model_folder import read_feature_settings

    (tmp_path / "features.json").write_text(content)
    with pytest.raises(InputError) as caught:
        require_clip_seconds(read_feature_settings(tmp_path), tmp_path / "features.json")
    one_line_naming(caught.value, "features.json")


def test_visual_words_outside_the_vocabulary_are_refused_with_the_file(small):
    from videobert.vocab.stage import load_tokens

    victim = small["tokens"] / f"{small['entries'][0]['video_id']}.npy"
    words = np.load(victim)
    words[0] = -3
    np.save(victim, words)
    with pytest.raises(InputError) as caught:
        load_tokens(small["tokens"])
    one_line_naming(caught.value, str(victim), "outside 0 …")


def test_a_segment_of_another_split_or_type_is_refused_with_its_line(tmp_path):
    from videobert.retrieval.gallery import read_segments

    path = tmp_path / "segments.jsonl"
    row = {"video_id": "v1", "start": 0, "end": 3, "sentence": "stir", "split": "test"}
    for bad, words in [({"split": "bogus"}, "split: 'bogus' is not one of"), ({"video_id": ["v1"]}, "video_id: "),
                       ({"end": 1e308}, "end: "), ({"start": True}, "start: ")]:
        path.write_text(json.dumps(row) + "\n" + json.dumps({**row, **bad}) + "\n")
        with pytest.raises(InputError) as caught:
            read_segments(path, ["test"])
        one_line_naming(caught.value, f"{path}:2", words)


def test_caption_refuses_embedding_rows_holding_nan(tmp_path):
    from videobert.caption.stage import _features

    emb = tmp_path / "emb"
    emb.mkdir()
    matrix = np.ones((3, 4), np.float16)
    matrix[1, 2] = np.nan
    np.save(emb / "test.npy", matrix)
    (emb / "test.jsonl").write_text("".join(json.dumps({"video_id": f"v{i}", "start": 0, "end": 1}) + "\n" for i in range(3)))
    (emb / "embed.json").write_text(json.dumps({"complete": True, "dim": 4, "splits": {"test": 3},
                                                "parts": [{"name": "videobert", "dim": 4}]}))
    with pytest.raises(InputError) as caught:
        _features(emb, "test", "videobert")
    one_line_naming(caught.value, "test.npy", "NaN or infinity", "'v1'")


# ----------------------------------------------------------------------------------- prepare
def youcook(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "youcookii_annotations_trainval.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize("recipe", ["../../..", "/etc", "a/b", ".."])
def test_youcook2_recipe_type_cannot_lead_out_of_root(tmp_path, recipe):
    from videobert.benchmarks.datasets import read_youcook2

    path = youcook(tmp_path, json.dumps({"database": {"abc": {"subset": "training", "recipe_type": recipe,
                                                               "annotations": []}}}))
    with pytest.raises(InputError) as caught:
        read_youcook2(tmp_path, path)
    one_line_naming(caught.value, "database.abc", "recipe_type")


def test_youcook2_and_msrvtt_ids_listed_twice_and_clips_ending_before_they_start_are_refused(tmp_path):
    from videobert.benchmarks.datasets import read_msrvtt, read_youcook2

    entry = '{"subset": "training", "recipe_type": "101", "annotations": []}'
    path = youcook(tmp_path, '{"database": {"abc": ' + entry + ', "abc": ' + entry + "}}")
    with pytest.raises(InputError, match="appears twice"):
        read_youcook2(tmp_path, path)
    (tmp_path / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,video_id,sentence\n")
    for videos, words in [([{"video_id": "video1"}, {"video_id": "video1"}], "listed twice"),
                          ([{"video_id": "video1", "start time": 10, "end time": 5}], "must end after it starts")]:
        (tmp_path / "MSRVTT_data.json").write_text(json.dumps({"videos": videos, "sentences": []}))
        with pytest.raises(InputError) as caught:
            read_msrvtt(tmp_path)
        one_line_naming(caught.value, "MSRVTT_data.json", words)


def test_an_msrvtt_test_list_in_latin1_is_named(tmp_path):
    from videobert.benchmarks.datasets import read_msrvtt

    (tmp_path / "MSRVTT_data.json").write_text(json.dumps({"videos": [{"video_id": "video1"}], "sentences": []}))
    (tmp_path / "MSRVTT_JSFUSION_test.csv").write_bytes("key,vid_key,video_id,sentence\n1,1,video1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"MSRVTT_JSFUSION_test\.csv: cannot read JSFusion test list \(not UTF-8"):
        read_msrvtt(tmp_path)


# ----------------------------------------------------------------------------------- what people see
def test_the_model_card_escapes_the_folder_name(tmp_path):
    from videobert.model_card import write_model_card

    name = '<img src=x onerror=alert(1)>"); import os; os.system("id"); ("`'
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"layers": 2, "hidden_size": 64, "heads": 2}))
    (folder / "features.json").write_text(json.dumps({"model": "<b>s3d</b>", "weights": "x`y"}))
    card = write_model_card(folder).read_text()
    prose = card.split("```python")[0] + card.split("```python")[1].split("```", 1)[1]  # less the code block
    assert "<img" not in prose and "<b>" not in prose and card.count("```") == 2
    usage = next(line for line in card.splitlines() if line.startswith("pipe = VideoBERTPipeline.from_pretrained("))
    literal = usage[len("pipe = VideoBERTPipeline.from_pretrained("):].split(", s3d_weights")[0].rstrip(")")
    import ast

    assert ast.literal_eval(literal) == name  # one string literal: pasting it runs nothing
    assert "`" not in literal


def test_printed_and_logged_text_shows_control_characters(tmp_path, capsys):
    from pipelines.common import say
    from videobert.logs import printable

    assert printable("v\x1b[2J\x1b[31m1\r\u202eok") == "v\\x1b[2J\\x1b[31m1\\r\\u202eok"
    say("sentence \x1b]0;pwned\x07 here")
    assert "\x1b" not in capsys.readouterr().out


# ----------------------------------------------------------------------------------- files that are not files
def test_filmstrip_of_a_fifo_is_refused_not_waited_on(tmp_path):
    from videobert.retrieval.display import filmstrip

    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="clip.mp4: file is not a regular file \\(it is a FIFO\\)"):
        filmstrip(fifo, 0.0, 1.5)
    playlist = tmp_path / "list.m3u8"
    playlist.write_text("#EXTM3U\n#EXTINF:1,\n/etc/passwd\n")
    with pytest.raises(InputError, match="list.m3u8: not a"):
        filmstrip(playlist, 0.0, 1.5)


def test_a_linked_thumbnail_or_summary_is_not_copied_into_the_model_folder(tmp_path):
    from tests.test_vocab import identity_codebook, random_tree
    from videobert.pretrain.package import copy_visual_vocab

    vocab = tmp_path / "vocab"
    (vocab / "exemplars").mkdir(parents=True)
    identity_codebook(random_tree(np.random.default_rng(0), 3, 2, 8), 2).save(vocab / "codebook.npz")
    secret = tmp_path / "secret.txt"
    secret.write_text("the password is hunter2")
    (vocab / "exemplars" / "7.jpg").symlink_to(secret)
    (vocab / "vocab.json").symlink_to(secret)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(vocab / "exemplars" / "3.jpg")
    model = tmp_path / "model"
    model.mkdir()
    copy_visual_vocab(vocab, model)
    copied = {str(p.relative_to(model)) for p in model.rglob("*") if p.is_file()}
    assert copied == {"visual_vocab/codebook.npz", "visual_vocab/exemplars/3.jpg"}
    assert not any("hunter2" in p.read_bytes().decode("latin-1") for p in model.rglob("*") if p.is_file())


def test_a_fifo_thumbnail_is_written_again_not_waited_on(eval_demo_run, tmp_path):
    import shutil

    from pipelines import vocab as vocab_stage
    from videobert.vocab.stage import exemplar_path

    vocab = tmp_path / "vocab"
    shutil.copytree(eval_demo_run["vocab"], vocab)
    thumb = exemplar_path(vocab, 0)
    thumb.unlink()
    os.mkfifo(thumb)
    config = json.loads((vocab / "vocab.json").read_text())
    features = config["features"]
    assert vocab_stage.main([features, "-o", str(vocab), "--k", "4", "--depth", "2", "--min-points-per-centroid", "2",
                             "--exemplar-size", "64", "--sheet-words", "0", "--device", "cpu", "-q"]) == 0
    assert thumb.is_file() and not thumb.is_fifo()
