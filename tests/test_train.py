"""Pretraining: losses, the CLI end to end, kill-and-resume, DDP, safe checkpoints, learning."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipelines import pretrain as pretrain_stage
from tests.conftest import REPO, run_cli
from videobert.training import STATE_FILE, list_checkpoints, load_training_state, resume_point
from videobert.corpus import load_corpus
from videobert.corpus.joint_vocab import JointVocabulary
from videobert.errors import ConfigError, InputError
from videobert.inputs import TokenLayout
from videobert.model import VideoBERT
from videobert.pretrain import (
    PretrainConfig, PretrainExamples, StepBatches, build_model, pretraining_losses, warmup_linear_decay,
)
from videobert.pretrain import run as pretrain
from videobert.vocab.codebook import Codebook

# Tiny models run fastest on one thread, and the suite shares two cores.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest, and repeatably, on one thread


# A short CPU run: 48 steps of 16 sequences, checkpoints every 8 steps.
RUN_FLAGS = ["--preset", "tiny", "--steps", "48", "--batch-size", "16", "--lr", "2e-3", "--warmup", "4",
             "--eval-every", "24", "--eval-sentences", "64", "--save-every", "8", "--log-every", "4",
             "--device", "cpu", "--seed", "5"]


def test_warmup_then_linear_decay():
    factors = [warmup_linear_decay(s, warmup=4, total=10) for s in range(11)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[10] == 0.0
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))


def test_each_loss_is_finite_and_falls_when_overfitting_one_batch(pretrain_corpus):
    vocab = JointVocabulary.load(pretrain_corpus)
    layout = TokenLayout.from_vocabulary(vocab)
    cfg = PretrainConfig(preset="tiny", dropout=0.0, concat_prob=0.5)
    examples = PretrainExamples(load_corpus(pretrain_corpus, "train"), layout, cfg, kinds=cfg.kinds())
    batch = StepBatches(examples, batch_size=48, grad_accum=1, seed=0)[0][0]
    assert all(batch["group_counts"]) and 0 < batch["align_labels"].mean() < 1  # every objective present
    model = build_model(cfg, layout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(80):
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["mlm_positions"])
        loss, parts = pretraining_losses(out, batch, cfg)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append({k: float(v) for k, v in parts.items()})
    for name in ("text_mlm", "video_mlm", "video_text_mlm", "align"):
        curve = [h[name] for h in history]
        assert all(np.isfinite(curve)), name
        assert curve[-1] < 0.3 * curve[0], (name, curve[0], curve[-1])


def test_attention_dropout_is_set_apart_from_the_blocks_dropout(pretrain_corpus):
    layout = TokenLayout.from_vocabulary(JointVocabulary.load(pretrain_corpus))
    assert build_model(PretrainConfig(preset="tiny", dropout=0.2), layout).config.attention_dropout == 0.2
    with pytest.raises(ConfigError, match="attention_dropout"):
        PretrainConfig(preset="tiny", attention_dropout=1.0).check()
    ids = torch.randint(0, layout.text_vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    types, mask = torch.zeros_like(ids), torch.ones_like(ids)

    def twice(**dropouts):
        model = build_model(PretrainConfig(preset="tiny", **dropouts), layout).train()
        return [model(ids, types, mask).hidden_states for _ in range(2)]

    first, second = twice(dropout=0.0, attention_dropout=0.0)
    assert torch.equal(first, second)  # no dropout anywhere: train mode is deterministic
    first, second = twice(dropout=0.0, attention_dropout=0.5)
    assert not torch.equal(first, second)  # only the attention probabilities are dropped


@pytest.fixture(scope="module")
def reference_run(pretrain_corpus, tmp_path_factory):
    """One uninterrupted CLI run (the kill-and-resume test compares against it)."""
    run = tmp_path_factory.mktemp("reference") / "run"
    result = run_cli("pretrain", pretrain_corpus, "-o", run, *RUN_FLAGS, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    return run


def test_cli_run_folder_loads_and_records_curves(reference_run, pretrain_corpus):
    run = reference_run
    for name in ("model.safetensors", "config.json", "config.yaml", "vocabulary.json", "tokenizer", "summary.json"):
        assert (run / name).exists(), name
    assert [step for step, _ in list_checkpoints(run)] == [40, 48]  # keep_checkpoints: 2
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(4, 49, 4))
    assert all(np.isfinite(r[k]) for r in train for k in ("loss", "text_mlm", "video_mlm", "video_text_mlm", "align"))
    assert train[-1]["loss"] < train[0]["loss"]
    val = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in val] == [24, 48]
    assert {"text_mlm_acc", "video_mlm_acc", "video_text_text_acc", "video_text_video_acc", "align_acc"} <= set(val[-1])

    model = VideoBERT.from_pretrained(run, device="cpu")
    assert not model.training
    vocab = JointVocabulary.load(run)
    assert vocab.size == model.config.vocab_size == JointVocabulary.load(pretrain_corpus).size
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 48 and summary["val"]["align_acc"] == pytest.approx(val[-1]["align_acc"], abs=1e-6)
    assert summary["chance"]["video_acc"] == 1 / vocab.visual_vocab_size


def test_kill_and_resume_matches_an_uninterrupted_run_bitwise(reference_run, pretrain_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIDEOBERT_PROGRESS": "0", **ONE_THREAD}
    process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "pretrain", str(pretrain_corpus), "-o", str(run), *RUN_FLAGS],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list_checkpoints(run) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = list_checkpoints(run)[-1][0]
    assert killed_at < 48 and not (run / "summary.json").exists()

    argv = [str(pretrain_corpus), "-o", str(run), *RUN_FLAGS, "-q"]
    assert pretrain_stage.main(argv) == 2  # checkpoints there, no --resume: refused
    assert "--resume" in capsys.readouterr().err
    assert pretrain_stage.main([*argv, "--resume", "--lr", "1e-3"]) == 2  # a different run: refused
    assert "lr: 0.002 -> 0.001" in capsys.readouterr().err

    resumed = run_cli("pretrain", pretrain_corpus, "-o", run, *RUN_FLAGS, "--resume", env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr
    expected, got = load_file(str(reference_run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    # the resumed run's curve continues the uninterrupted one
    def curve(folder):
        rows = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]
    assert curve(run) == curve(reference_run)
    assert pretrain_stage.main([*argv, "--resume"]) == 0  # already complete: nothing to do


def test_two_process_gloo_run_keeps_identical_replicas_equal_to_one_process(pretrain_corpus, tmp_path):
    flags = ["--preset", "tiny", "--steps", "6", "--batch-size", "16", "--lr", "2e-3", "--warmup", "2", "--dropout", "0",
             "--eval-every", "0", "--eval-sentences", "32", "--save-every", "0", "--log-every", "3", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIDEOBERT_PROGRESS": "0", **ONE_THREAD}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "pipelines.pretrain", str(pretrain_corpus), "-o", str(tmp_path / "ddp"), *flags],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["replicas_identical"]

    # the same global batch in one process, as two accumulated micro-batches: the same update
    cfg = PretrainConfig(preset="tiny", steps=6, batch_size=16, grad_accum=2, lr=2e-3, warmup=2, dropout=0.0,
                         eval_every=0, eval_sentences=32, save_every=0, log_every=3, device="cpu")
    pretrain(pretrain_corpus, tmp_path / "single", cfg)
    ddp, single = load_file(str(tmp_path / "ddp" / "model.safetensors")), load_file(str(tmp_path / "single" / "model.safetensors"))
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], atol=1e-5, rtol=1e-4)


class _Payload:
    """Unpickling this would create a file: what a malicious checkpoint does."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_malicious_checkpoint_is_refused_without_running_it(pretrain_corpus, tmp_path, capsys):
    flags = ["--preset", "tiny", "--steps", "4", "--batch-size", "8", "--save-every", "2", "--eval-every", "0",
             "--device", "cpu", "-q"]
    run = tmp_path / "run"
    assert pretrain_stage.main([str(pretrain_corpus), "-o", str(run), *flags]) == 0
    checkpoint = list_checkpoints(run)[-1][1]
    state = load_training_state(checkpoint)
    assert state["step"] == 4 and state["data_position"]["step"] == 4

    marker = tmp_path / "pwned"
    torch.save({"step": 2, "optimizer": _Payload(str(marker))}, checkpoint / STATE_FILE)
    (run / "summary.json").unlink()
    capsys.readouterr()
    assert pretrain_stage.main([str(pretrain_corpus), "-o", str(run), *flags, "--resume"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("videobert pretrain: error: ") and "refused" in error and STATE_FILE in error
    assert not marker.exists()
    with pytest.raises(InputError, match="refused"):
        load_training_state(checkpoint)


@pytest.fixture(scope="module")
def feature_corpus(tmp_path_factory):
    """Features -> vocab -> tokenize -> corpus on 48 planned synthetic videos: (corpus, vocab)."""
    from tests.pretrain_corpus import make_feature_corpus

    return make_feature_corpus(tmp_path_factory.mktemp("features") / "data", videos=48, seed=0)


def assert_copies_vocabulary(run, vocab_dir):
    """The model folder holds its own copy of VOCAB's codebook, recorded by hash."""
    vocab = JointVocabulary.load(run)
    assert vocab.visual_vocab == str(run / "visual_vocab")
    source = Codebook.load(vocab_dir / "codebook.npz", device="cpu")
    assert Codebook.load(run / "visual_vocab" / "codebook.npz", device="cpu").hash == source.hash == vocab.codebook


def test_from_features_to_a_model_that_learns_with_codebook_centroids(feature_corpus, tmp_path):
    """pretrain --vocab after the real vocab, tokenize and corpus stages: masked words of both
    modalities, alone and across modalities, well above chance after a few hundred steps.
    (Alignment leaves chance only after thousands: bench/pretrain_synthetic.py.)"""
    corpus, vocab_dir = feature_corpus
    flags = ["--preset", "tiny", "--steps", "600", "--batch-size", "32", "--lr", "3e-3", "--warmup", "60",
             "--concat-prob", "0", "--subsample-max", "1", "--eval-every", "0", "--eval-sentences", "1000",
             "--save-every", "0", "--log-every", "100", "--device", "cpu", "-q"]
    run = tmp_path / "run"
    assert pretrain_stage.main([str(corpus), "--vocab", str(vocab_dir), "-o", str(run), *flags]) == 0
    assert_copies_vocabulary(run, vocab_dir)
    summary = json.loads((run / "summary.json").read_text())
    val, chance = summary["val"], summary["chance"]
    assert val["text_mlm_acc"] > max(0.3, 10 * chance["text_acc"])
    assert val["video_text_text_acc"] > max(0.3, 10 * chance["text_acc"])
    assert val["video_mlm_acc"] > 10 * chance["video_acc"]
    assert val["video_text_video_acc"] > 10 * chance["video_acc"]


def test_without_vocab_flag_the_corpus_vocabulary_initialises_visual_words(feature_corpus, tmp_path):
    corpus, vocab_dir = feature_corpus
    flags = ["--preset", "tiny", "--steps", "1", "--batch-size", "8", "--lr", "1e-9", "--warmup", "0", "--dropout", "0",
             "--eval-every", "0", "--save-every", "0", "--device", "cpu", "-q"]
    assert pretrain_stage.main([str(corpus), "-o", str(tmp_path / "run"), *flags]) == 0
    assert_copies_vocabulary(tmp_path / "run", vocab_dir)
    model = VideoBERT.from_pretrained(tmp_path / "run")
    visual = model.embeddings.word.weight[model.config.visual_offset :].detach().double().numpy()
    from videobert.vocab import load_centroids

    centroids = load_centroids(vocab_dir).astype(np.float64)
    # the centroids' geometry, up to scale: their pairwise distances correlate perfectly
    distance = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)[np.triu_indices(len(x), 1)]  # noqa: E731
    assert np.corrcoef(distance(visual), distance(centroids))[0, 1] > 0.99


def test_a_distillation_resumes_only_with_its_own_settings_and_a_finished_one_is_found(tmp_path):
    from videobert import config as cfgmod
    from videobert.distil.stage import DistilConfig

    cfg = DistilConfig(steps=20)
    cfgmod.save(cfg, tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match=r"config.yaml: --resume with a different config \(steps: 20 -> 30\)"):
        resume_point(tmp_path, DistilConfig(steps=30), 30, "dual.json")
    assert resume_point(tmp_path, cfg, 20, "dual.json") == (None, None)  # nothing saved yet: step 0
    (tmp_path / "dual.json").write_text('{"steps": 20}')
    assert resume_point(tmp_path, cfg, 20, "dual.json") == (None, None)  # a summary, but no weights beside it
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert resume_point(tmp_path, cfg, 20, "dual.json") == (None, {"steps": 20})
