"""The paper's downstream uses through ``videobert run``: segment embeddings (shapes, the template,
the S3D part, sharding and resuming), captioners (training that resumes bit for bit, beam search,
the nearest-neighbour and consensus baselines, the commands) and one-line errors for bad inputs."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import PORTABLE_RUN, run_cli, run_config
from videobert.errors import ConfigError, InputError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: fastest, and repeatable, on one thread

TEMPLATE = "now the [MASK] [MASK] [MASK] [MASK]"
CAPTION = {"steps": 200, "lr": 2e-3, "warmup": 20, "batch_size": 8, "hidden_size": 32, "heads": 2, "intermediate_size": 64, "encoder_layers": 1,
           "decoder_layers": 1, "save_every": 0, "log_every": 10, "beam": 2, "device": "cpu", "max_len": 16}
RUN = {**PORTABLE_RUN, "embed": {"device": "cpu", "template": TEMPLATE}, "caption": CAPTION,
       "forecast": {"device": "cpu", "context": 4}}


@pytest.fixture(scope="module")
def downstream(tmp_path_factory):
    """A small pipeline run with the embed, caption and forecast stages."""
    return run_config(tmp_path_factory.mktemp("downstream"), RUN)


def embed(run, out, **overrides):
    from videobert.embed import EmbedConfig, run as embed_run

    cfg = EmbedConfig(device="cpu", template=TEMPLATE)
    return embed_run(run / "model", overrides.pop("segments", run / "synth" / "segments.jsonl"), run / "tokens", out,
                     cfg, features=overrides.pop("features", run / "features"), **overrides)


def test_the_run_embeds_captions_and_forecasts(downstream):
    run, result = downstream
    assert "caption" in result.stdout and "forecast" in result.stdout
    meta = json.loads((run / "embed" / "embed.json").read_text())
    hidden = json.loads((run / "model" / "config.json").read_text())["hidden_size"]
    assert meta["parts"] == [{"name": "videobert", "dim": hidden}, {"name": "s3d", "dim": 1024}]
    segments = [json.loads(line) for line in (run / "synth" / "segments.jsonl").read_text().splitlines()]
    for split, count in meta["splits"].items():
        matrix = np.load(run / "embed" / f"{split}.npy")
        rows = (run / "embed" / f"{split}.jsonl").read_text().splitlines()
        assert matrix.shape == (len(rows), hidden + 1024) == (count, meta["dim"]) and matrix.dtype == np.float16
        assert count == sum(s["split"] == split for s in segments)  # the synthetic segments all cover clips
        assert np.isfinite(matrix).all()
    from videobert.caption.metrics import caption_metrics, java_status

    captions = json.loads((run / "caption" / "metrics.json").read_text())["by_features"]
    assert set(captions) == {"s3d", "videobert", "both"}
    java, why = java_status()
    for figures in captions.values():
        for kind in ("captioner", "nearest_neighbour", "consensus"):
            assert all(0 <= figures[kind][key] for key in ("bleu3", "bleu4", "rouge_l", "cider"))
            if java:  # where Java runs, METEOR is computed: a figure, never a note (above 0 for a copied caption)
                assert figures[kind]["meteor"] is not None and 0 <= figures[kind]["meteor"] <= 1, figures[kind]
                assert kind == "captioner" or figures[kind]["meteor"] > 0, (kind, figures[kind])
            else:
                assert figures[kind]["meteor"] is None and figures[kind]["meteor_note"], why
        assert figures["consensus_k"] >= 1
        assert (run / "caption" / figures["features"] / "model.safetensors").is_file()
    # the captioner learned something: above a caption drawn at random from the train split, on the
    # same segments and tokenizer — on word overlap (BLEU-3, ROUGE-L): from this corpus's four train
    # videos it writes shorter sentences than the narrations, which CIDEr's length penalty weighs
    # more than its words (the demo's captioners are held to CIDEr against stronger baselines: its bars)
    rng = np.random.default_rng(0)
    train_sentences = [json.loads(line)["sentence"] for line in (run / "embed" / "train.jsonl").read_text().splitlines()]
    written = [json.loads(line) for line in (run / "caption" / "both" / "eval-test" / "captions.jsonl").read_text().splitlines()]
    references = {str(i): row["references"] for i, row in enumerate(written)}
    random = caption_metrics(references, {str(i): train_sentences[rng.integers(len(train_sentences))]
                                          for i in range(len(written))}, meteor=False)
    for key in ("bleu3", "rouge_l"):
        assert captions["both"]["captioner"][key] > random[key], (key, captions["both"]["captioner"], random)
    forecast = json.loads((run / "forecast" / "metrics.json").read_text())
    assert forecast["predictions"] > 0 and 0 <= forecast["model"]["top1"] <= forecast["model"]["top5"] <= 1


def test_a_row_is_the_mean_state_of_the_video_and_masked_tokens_beside_the_mean_s3d_feature(downstream):
    from videobert.corpus.align import overlapping_clips
    from videobert.corpus.joint_vocab import JointVocabulary
    from videobert.model import VideoBERT

    run, _ = downstream
    model = VideoBERT.from_pretrained(run / "model")
    vocab = JointVocabulary.load(run / "model")
    template = vocab.encode_template(TEMPLATE)
    assert template.count(vocab.mask_id) == 4
    matrix = np.load(run / "embed" / "test.npy").astype(np.float32)
    rows = [json.loads(line) for line in (run / "embed" / "test.jsonl").read_text().splitlines()]
    hidden = model.config.hidden_size
    for row, embedded in list(zip(rows, matrix))[:3]:
        words = np.load(run / "tokens" / f"{row['video_id']}.npy")
        clips = overlapping_clips(row["start"], row["end"], len(words), 1.5)
        ids = [vocab.cls_id, *template, vocab.video_sep_id, *(words[clips.start:clips.stop] + vocab.visual_offset),
               vocab.sep_id]
        types = [0] * (len(template) + 1) + [1] * (len(ids) - len(template) - 1)
        with torch.no_grad():
            states = model(torch.tensor([ids]), torch.tensor([types])).hidden_states[0]
        read = [i for i, token in enumerate(ids) if token == vocab.mask_id or token >= vocab.visual_offset]
        np.testing.assert_allclose(embedded[:hidden], states[read].mean(0).numpy(), rtol=2e-3, atol=2e-3)
        features = np.load(run / "features" / f"{row['video_id']}.npy").astype(np.float32)
        np.testing.assert_allclose(embedded[hidden:], features[clips.start:clips.stop].mean(0), rtol=2e-3, atol=2e-3)


def test_shards_and_a_resumed_run_write_the_same_files_as_one_run(downstream, tmp_path, monkeypatch):
    from videobert.embed import stage
    from videobert.runtime import Shard

    run, _ = downstream
    monkeypatch.setattr(stage, "CHUNK", 5)
    whole = tmp_path / "whole"
    embed(run, whole)
    apart = tmp_path / "apart"
    first = embed(run, apart, shard=Shard(0, 2))
    assert "left to other workers" in first.message and not (apart / "train.npy").exists()
    parts = sorted(p.name for p in (apart / "parts").glob("*.jsonl") if not p.name.endswith("failures.jsonl"))
    counts = json.loads((whole / "embed.json").read_text())["splits"].values()
    assert len(parts) == (sum(-(-n // 5) for n in counts) + 1) // 2  # every other chunk of the splits in turn
    again = embed(run, apart, shard=Shard(0, 2))  # a rerun finds its chunks done
    assert again.skipped == len(parts) and again.done == 0
    embed(run, apart, shard=Shard(1, 2))  # the last worker merges
    assert not (apart / "parts").exists()
    for name in ("train.npy", "val.npy", "test.npy", "train.jsonl", "test.jsonl", "failures.jsonl"):
        assert (apart / name).read_bytes() == (whole / name).read_bytes(), name
    with pytest.raises(ConfigError, match="another template"):
        from videobert.embed import EmbedConfig, run as embed_run
        embed_run(run / "model", run / "synth" / "segments.jsonl", run / "tokens", whole,
                  EmbedConfig(device="cpu", template="the [MASK]"), features=run / "features")


EMBED_KILLER = """
import os, signal, sys
from pathlib import Path
import torch
from videobert.embed import EmbedConfig, run, stage
torch.set_num_threads(1)
run_dir, out, template = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
stage.CHUNK = 5
real_write = stage.atomic_write_text
def write_text(path, text):  # kill -9 when the third chunk's rows are out but not its index
    if str(path).endswith("-000002.jsonl") and not str(path).endswith("failures.jsonl"):
        os.kill(os.getpid(), signal.SIGKILL)
    real_write(path, text)
stage.atomic_write_text = write_text
run(run_dir / "model", run_dir / "synth" / "segments.jsonl", run_dir / "tokens", out,
    EmbedConfig(device="cpu", template=template), features=run_dir / "features")
"""


def test_embed_killed_and_rerun_writes_the_same_files_as_one_run(downstream, tmp_path, monkeypatch):
    from videobert.embed import stage

    run, _ = downstream
    monkeypatch.setattr(stage, "CHUNK", 5)
    embed(run, tmp_path / "whole")
    out = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", EMBED_KILLER, str(run), str(out), TEMPLATE], capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (out / "train.npy").exists() and "complete" not in json.loads((out / "embed.json").read_text())
    indexed = sorted(p.name for p in (out / "parts").glob("*.jsonl") if not p.name.endswith("failures.jsonl"))
    assert indexed[-1].endswith("-000001.jsonl") and (out / "parts" / indexed[-1].replace("000001", "000002")
                                                     ).with_suffix(".npy").exists()  # rows out, index not
    again = embed(run, out)
    assert again.skipped == len(indexed)  # the chunks with an index are not redone
    for name in ("train.npy", "val.npy", "test.npy", "train.jsonl", "test.jsonl", "failures.jsonl"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_segments_without_clips_or_visual_words_are_listed_and_the_rest_embedded(downstream, tmp_path):
    run, _ = downstream
    segments = (run / "synth" / "segments.jsonl").read_text().splitlines()
    first = json.loads(segments[0])
    bad = [json.dumps({**first, "start": 5000.0, "end": 5001.0}), json.dumps({**first, "video_id": "nowhere"})]
    path = tmp_path / "segments.jsonl"
    path.write_text("\n".join(segments + bad) + "\n")
    summary = embed(run, tmp_path / "emb", segments=path)
    failures = [json.loads(line) for line in (tmp_path / "emb" / "failures.jsonl").read_text().splitlines()]
    assert [(f["id"], f["kind"]) for f in failures] == [(f"{path}:{len(segments) + 1}", "no_clip"),
                                                       (f"{path}:{len(segments) + 2}", "missing")]
    assert "covers no clip" in failures[0]["reason"] and summary.failed == 2
    assert sum(json.loads((tmp_path / "emb" / "embed.json").read_text())["splits"].values()) == len(segments)


def test_features_of_another_extract_setting_and_malformed_segments_are_one_line_errors(downstream, tmp_path):
    run, _ = downstream
    other = tmp_path / "features"
    shutil.copytree(run / "features", other)
    meta = json.loads((other / "extract.json").read_text())
    (other / "extract.json").write_text(json.dumps({**meta, "size": 224}))
    with pytest.raises(ConfigError, match=r"extract\.json: features made with size=224") as error:
        embed(run, tmp_path / "emb", features=other)
    assert "\n" not in str(error.value) and not (tmp_path / "emb").exists()
    segments = tmp_path / "segments.jsonl"
    segments.write_text('{"video_id": "synth_0000", "start": 4, "end": 2, "sentence": "x", "split": "train"}\n')
    with pytest.raises(InputError, match=r"segments\.jsonl:1: segment of 'synth_0000' ends"):
        embed(run, tmp_path / "emb2", segments=segments)


def train(emb, out):
    from videobert.caption.stage import CaptionConfig, train as caption_train

    return caption_train(emb, out, CaptionConfig(**{**CAPTION, "save_every": 10, "steps": 24}))


def test_caption_training_resumes_bit_for_bit_after_an_interruption(downstream, tmp_path):
    from videobert.caption.stage import CaptionConfig, train as caption_train

    run, _ = downstream
    emb = run / "embed"
    train(emb, tmp_path / "whole")
    cfg = CaptionConfig(**{**CAPTION, "save_every": 10, "steps": 24})

    def stop(step, loss):
        if step == 15:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        caption_train(emb, tmp_path / "resumed", cfg, on_step=stop)
    with pytest.raises(ConfigError, match="--resume"):
        caption_train(emb, tmp_path / "resumed", cfg)
    caption_train(emb, tmp_path / "resumed", cfg, resume=True)
    assert (tmp_path / "resumed" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    other = CaptionConfig(**{**cfg.__dict__, "lr": 1e-2})
    with pytest.raises(ConfigError, match="other settings"):
        caption_train(emb, tmp_path / "resumed", other, resume=True)


CAPTION_KILLER = """
import json, os, signal, sys
import torch
from videobert.caption.stage import CaptionConfig, train
from videobert import training as checkpoint
torch.set_num_threads(1)
emb, out, settings, where = sys.argv[1:5]
saves = {"n": 0}
real_save = checkpoint.torch.save
def save(state, path):  # kill -9 inside the second checkpoint's write: its weights are out, its state not yet
    saves["n"] += 1
    if where == "checkpoint" and saves["n"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(state, path)
checkpoint.torch.save = save
def stop(step, loss):  # kill -9 between two checkpoints
    if where == "step" and step == 15:
        os.kill(os.getpid(), signal.SIGKILL)
train(emb, out, CaptionConfig(**json.loads(settings)), on_step=stop)
"""


@pytest.mark.parametrize("where", ["step", "checkpoint"])
def test_caption_training_killed_and_resumed_gives_the_same_weights(downstream, tmp_path, where):
    from videobert.caption.stage import CaptionConfig, train as caption_train

    run, _ = downstream
    emb = run / "embed"
    train(emb, tmp_path / "whole")
    settings = {**CAPTION, "save_every": 10, "steps": 24}
    killed = subprocess.run([sys.executable, "-c", CAPTION_KILLER, str(emb), str(tmp_path / "killed"),
                             json.dumps(settings), where], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    assert [p.name for p in sorted((tmp_path / "killed" / "checkpoints").glob("step-*"))] == ["step-00000010"]
    caption_train(emb, tmp_path / "killed", CaptionConfig(**settings), resume=True)
    assert (tmp_path / "killed" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert not list((tmp_path / "killed" / "checkpoints").glob(".step-*"))  # the half-written one is gone


def test_an_empty_caption_is_an_error_naming_its_row(downstream, tmp_path):
    run, _ = downstream
    emb = tmp_path / "emb"
    shutil.copytree(run / "embed", emb)
    rows = (emb / "train.jsonl").read_text().splitlines()
    rows[2] = json.dumps({**json.loads(rows[2]), "sentence": "  "})
    (emb / "train.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"train\.jsonl:3: the caption of segment .* is empty"):
        train(emb, tmp_path / "cap")


def test_a_beam_of_one_without_length_penalty_is_greedy_decoding(downstream, tmp_path):
    from videobert.caption.beam import beam_search
    from videobert.caption.stage import CaptionConfig, load_captioner
    from videobert.caption.stage import train as caption_train
    from videobert.embed.stage import load_embeddings

    run, _ = downstream
    # a captioner whose end of sentence is never the runner-up of a step before the greedy path's end
    # (beam search keeps such an early ending aside and may return it: then it is not greedy)
    caption_train(run / "embed", tmp_path / "cap", CaptionConfig(**{**CAPTION, "steps": 30, "lr": 5e-4, "warmup": 100}))
    model, tokenizer, info = load_captioner(tmp_path / "cap")
    matrix, _, _ = load_embeddings(run / "embed", "test")
    features = torch.from_numpy(np.asarray(matrix[:4], np.float32))
    found = beam_search(model, features, beam=1, alpha=0.0, banned=[tokenizer.convert_tokens_to_ids("[UNK]")])
    config = model.config
    for row, ids in zip(features, found):
        prefix = [config.bos_id]
        with torch.no_grad():
            memory = model.encode(row[None])
            while len(prefix) < config.max_len:
                logits = model.decode(memory, torch.tensor([prefix]))[0, -1]
                logits[[config.bos_id, config.pad_id, tokenizer.convert_tokens_to_ids("[UNK]")]] = float("-inf")
                if len(prefix) == config.max_len - 1:
                    break
                token = int(logits.argmax())
                if token == config.eos_id:
                    break
                prefix.append(token)
        assert ids == prefix[1:]


def test_the_nearest_neighbour_baseline_copies_the_most_similar_train_caption():
    from videobert.caption.consensus import consensus_captions, nearest_neighbour_captions

    rng = np.random.default_rng(0)
    train_features = rng.normal(size=(20, 6)).astype(np.float32)
    sentences = [f"caption {i}" for i in range(20)]
    queries = train_features[[3, 17, 8]] + 0.01 * rng.normal(size=(3, 6)).astype(np.float32)
    assert nearest_neighbour_captions(train_features, sentences, queries) == ["caption 3", "caption 17", "caption 8"]
    assert consensus_captions(train_features, sentences, queries, 1) == ["caption 3", "caption 17", "caption 8"]


def test_the_consensus_baseline_picks_the_caption_its_neighbours_agree_on():
    from videobert.caption.consensus import consensus_captions, nearest_train_rows

    rng = np.random.default_rng(1)
    centre = rng.normal(size=6).astype(np.float32)
    # five train segments around the query, nearest first; the nearest has an odd phrasing, three others
    # say the same thing in the common one; fifteen more far away
    near = centre + np.outer(np.arange(1, 6), 0.02 * np.ones(6, np.float32))
    far = rng.normal(size=(15, 6)).astype(np.float32) * 5 + 20
    train_features = np.concatenate([near, far]).astype(np.float32)
    sentences = ["okay so the red circle is going to the left now", "now the red circle moves left",
                 "now the red circle moves left okay", "now the red circle moves left", "the blue square grows",
                 *[f"far away {i}" for i in range(15)]]
    query = centre[None] - 0.01
    assert list(nearest_train_rows(train_features, query, 5)[0]) == [0, 1, 2, 3, 4]
    assert consensus_captions(train_features, sentences, query, 1) == [sentences[0]]
    assert consensus_captions(train_features, sentences, query, 5) == ["now the red circle moves left"]
    with pytest.raises(ValueError, match="k: need at least 1"):
        consensus_captions(train_features, sentences, query, 0)


def test_the_caption_commands(downstream, tmp_path):
    run, _ = downstream
    cap = tmp_path / "cap"
    settings = [f"--set={k}={v}" for k, v in CAPTION.items() if k != "steps"]
    result = run_cli("caption", "train", run / "embed", "-o", cap, "--features", "s3d", "--steps", "12", *settings)
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli("caption", "generate", cap, "--limit", "2", "-o", tmp_path / "captions.jsonl")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(isinstance(line["caption"], str) for line in lines)
    result = run_cli("caption", "evaluate", cap, "--beam", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((cap / "eval-test" / "metrics.json").read_text())
    assert metrics["beam"] == 1 and metrics["features"] == "s3d" and "nearest neighbour" in result.stdout
    from videobert.caption.stage import CONSENSUS_K

    assert metrics["consensus_k"] == CONSENSUS_K and f"consensus of {CONSENSUS_K}" in result.stdout
    result = run_cli("caption", "evaluate", cap, "--beam", "1", "--consensus-k", "1", "-o", tmp_path / "k1")
    assert result.returncode == 0, result.stderr[-2000:]
    k1 = json.loads((tmp_path / "k1" / "metrics.json").read_text())
    assert k1["consensus"]["cider"] == k1["nearest_neighbour"]["cider"]  # k = 1: the nearest neighbour
    missing = run_cli("caption", "evaluate", tmp_path / "nowhere")
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1


def test_the_pipeline_embeds_captions_and_forecasts_a_video_file_as_the_stages_do(downstream):
    from videobert import VideoBERTPipeline
    from videobert.caption.stage import generate, load_captioner

    run, _ = downstream
    pipe = VideoBERTPipeline.from_pretrained(run / "model", device="cpu")
    row = json.loads((run / "embed" / "test.jsonl").read_text().splitlines()[0])
    video = run / "synth" / "videos" / f"{row['video_id']}.mp4"
    embedded = pipe.embed(video, row["start"], row["end"], template=TEMPLATE)
    np.testing.assert_allclose(embedded, np.load(run / "embed" / "test.npy")[0].astype(np.float32), rtol=2e-3, atol=2e-3)
    captioner = run / "caption" / "both"
    model, tokenizer, _ = load_captioner(captioner)
    expected = generate(model, tokenizer, np.load(run / "embed" / "test.npy")[:1].astype(np.float32), beam=2)[0]
    assert pipe.caption(video, captioner, row["start"], row["end"]) == expected
    words, probabilities = pipe.forecast(np.load(run / "tokens" / f"{row['video_id']}.npy")[:5], n_words=3)
    assert len(words) == 3 and all(0 <= w < pipe.loaded.layout.visual_vocab_size for w in words)
    assert all(0 < p <= 1 for p in probabilities)
    with pytest.raises(InputError, match="no clip"):
        pipe.embed(video, 9000.0, 9001.0)
