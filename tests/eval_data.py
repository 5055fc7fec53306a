"""Corpora that a tiny model can learn in seconds, for the evaluation tests.

Visual words are a noisy function of what a clip shows, made straight from the synthetic
generator's plans (no rendering, no feature extraction): a clip whose middle falls inside a
segment shows, with probability ``signal``, its colour (words ``0 … 5``) or its action (words
``6 … 11``), half and half, and a random word otherwise; clips between segments get background
words ``12 … V-1``. Shape is not encoded, so a model can only guess it from the text. The
folders are the real formats: ``TOKENS/`` (with ``tokens.json``), WebVTT transcripts, a
manifest, ``labels.jsonl`` with its ``zeroshot.yaml`` and a corpus built by the corpus stage
(:func:`videobert.corpus.run`).

For the commands and the notebook, :func:`make_demo_run` turns the same kind of plan into clip
features of the rendered fixture videos and runs the stage commands on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from videobert import corpus as corpus_stage
from videobert.manifest import VideoEntry, write_manifest
from videobert.store import atomic_save_npy
from videobert.synthetic import ACTIONS, COLOURS, SynthConfig, plan_corpus
from videobert.synthetic.stage import write_labels
from videobert.text import write_webvtt

CLIP_SECONDS = 1.5
SIGNAL_WORDS = len(COLOURS) + len(ACTIONS)  # 12


def planted_words(plan, rng: np.random.Generator, vocab_size: int, signal: float) -> np.ndarray:
    """int64 [n_clips]: the visual word of each 1.5 s clip of one planned video."""
    clips = int(plan.duration // CLIP_SECONDS)
    words = rng.integers(SIGNAL_WORDS, vocab_size, size=clips)
    middles = (np.arange(clips) + 0.5) * CLIP_SECONDS
    for segment in plan.segments:
        colour, action = list(COLOURS).index(segment.colour), len(COLOURS) + ACTIONS.index(segment.action)
        inside = np.flatnonzero((middles >= segment.start) & (middles < segment.end))
        meaning = np.where(rng.random(inside.size) < 0.5, colour, action)
        noisy = rng.random(inside.size) >= signal
        words[inside] = np.where(noisy, rng.integers(vocab_size, size=inside.size), meaning)
    return words


def make_learnable_corpus(out: Path, videos: int = 96, seed: int = 3, vocab_size: int = 48, signal: float = 0.85) -> Path:
    """Write ``tokens/``, ``transcripts/``, ``manifest.jsonl`` (naming videos that are never
    rendered), ``labels.jsonl`` and ``corpus/`` under ``out``; returns the corpus folder."""
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_corpus(SynthConfig(videos=videos, seed=seed))
    tokens, transcripts = out / "tokens", out / "transcripts"
    tokens.mkdir(exist_ok=True)
    transcripts.mkdir(exist_ok=True)
    entries = []
    for plan in plans:
        rng = np.random.default_rng([seed, plan.index, 7])
        atomic_save_npy(tokens / f"{plan.video_id}.npy", planted_words(plan, rng, vocab_size, signal).astype(np.int32))
        write_webvtt(transcripts / f"{plan.video_id}.vtt", [s.narration for s in plan.segments if s.narration])
        entries.append(VideoEntry(plan.video_id, out / "videos" / f"{plan.video_id}.mp4",
                                  transcripts / f"{plan.video_id}.vtt", plan.split))
    write_manifest(out / "manifest.jsonl", entries)
    write_labels(out, plans)
    (tokens / "tokens.json").write_text(json.dumps({"vocab": None, "vocab_size": vocab_size, "fps": 20,
                                                    "clip_frames": 30, "clip_seconds": CLIP_SECONDS}))
    corpus = out / "corpus"
    corpus_stage.run(out / "manifest.jsonl", tokens, corpus, corpus_stage.CorpusConfig())
    return corpus


def fit(model, batches, cfg, steps: int, lr: float) -> None:
    """``steps`` optimiser steps of the pretraining losses over ``batches`` (AdamW, warmup then
    linear decay over ``cfg.steps``), leaving the model in eval mode."""
    import functools

    import torch

    from videobert.pretrain import pretraining_losses, warmup_linear_decay

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(warmup_linear_decay, warmup=cfg.warmup, total=cfg.steps))
    model.train()
    for step in range(steps):
        (batch,) = batches[step]
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["mlm_positions"])
        loss, _ = pretraining_losses(out, batch, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()


def train_tiny(corpus: Path, run_dir: Path, steps: int = 1000, seed: int = 0, lr: float = 2e-3) -> Path:
    """Train a tiny VideoBERT on ``corpus`` with the pretraining data path and losses, and save
    it as a run folder (model, vocabulary, tokenizer, config.yaml).

    Only the video-text objectives (masked tokens of aligned pairs, alignment) are on, and the
    weights start with a standard deviation of 0.1 instead of BERT's 0.02: at hidden size 64 the
    [CLS] state of a 0.02 initialisation hardly differs between inputs, and the alignment head
    stays at chance for thousands of steps; this way it learns within a few hundred.
    """

    import torch

    from videobert import config as cfgmod
    from videobert.corpus import load_corpus
    from videobert.model import ModelConfig, VideoBERT
    from videobert.corpus.joint_vocab import JointVocabulary
    from videobert.inputs import TokenLayout
    from videobert.pretrain import PretrainConfig, PretrainExamples, StepBatches

    vocab = JointVocabulary.load(corpus)
    layout = TokenLayout.from_vocabulary(vocab)
    cfg = PretrainConfig(preset="tiny", text_mlm=0.0, video_mlm=0.0, dropout=0.0, concat_prob=0.0, subsample_max=1,
                         max_len=64, seed=seed, steps=steps, warmup=30, lr=lr, batch_size=32, device="cpu")
    torch.manual_seed(seed)
    model = VideoBERT(ModelConfig.preset("tiny", layout.text_vocab_size, layout.visual_vocab_size, dropout=0.0,
                                         attention_dropout=0.0, initializer_range=0.1, max_positions=cfg.max_len))
    examples = PretrainExamples(load_corpus(corpus, "train"), layout, cfg, kinds=cfg.kinds())
    fit(model, StepBatches(examples, cfg.batch_size, 1, seed), cfg, steps, lr)
    model.save_pretrained(run_dir)
    vocab.save(run_dir)
    cfgmod.save(cfg, run_dir / "config.yaml")
    return run_dir


def planted_features(synth_corpus: Path, videos: int, seed: int, out: Path, signal: float = 0.85) -> Path:
    """A FEATURES folder (``videobert extract``'s format) for the rendered synthetic corpus: each
    clip's 1024-d feature is the centre of what it shows (:func:`planted_words` with 16 kinds:
    6 colours, 6 actions, 4 backgrounds) plus noise, so the vocabulary stage can find them."""
    from videobert.features import FEATURE_DIM

    out.mkdir(parents=True, exist_ok=True)
    centres = np.random.default_rng(seed).standard_normal((SIGNAL_WORDS + 4, FEATURE_DIM)) * 2
    for plan in plan_corpus(SynthConfig(videos=videos, seed=seed)):
        rng = np.random.default_rng([seed, plan.index, 7])
        kinds = planted_words(plan, rng, len(centres), signal)
        features = centres[kinds] + rng.standard_normal((len(kinds), FEATURE_DIM))
        atomic_save_npy(out / f"{plan.video_id}.npy", features.astype(np.float16))
    (out / "extract.json").write_text(json.dumps({
        "fps": 20, "clip_frames": 30, "clip_seconds": CLIP_SECONDS, "size": 112, "model": "planted",
        "weights": "none", "manifest": str((synth_corpus / "manifest.jsonl").absolute())}))
    return out


def make_demo_run(synth_corpus: Path, out: Path) -> dict[str, Path]:
    """A small run over the rendered ``synth_corpus`` fixture (6 videos, seed 1) made by the
    stage commands — vocab (with exemplar frames), tokenize, corpus, pretrain, distil — from planted
    features (:func:`planted_features`). Returns the folders by name; ``labels`` is the
    fixture's ``labels.jsonl``, beside its manifest."""
    from pipelines import corpus as corpus_stage
    from pipelines import distil as distil_stage
    from pipelines import pretrain as pretrain_stage
    from pipelines import tokenize as tokenize_stage
    from pipelines import vocab as vocab_stage

    features = planted_features(synth_corpus, videos=6, seed=1, out=out / "features")
    vocab, tokens, corpus, run = out / "vocab", out / "tokens", out / "corpus", out / "run"
    assert vocab_stage.main([str(features), "-o", str(vocab), "--k", "4", "--depth", "2", "--min-points-per-centroid", "2",
                             "--exemplar-size", "64", "--sheet-words", "0", "--device", "cpu", "-q"]) == 0
    assert tokenize_stage.main([str(features), "--vocab", str(vocab), "-o", str(tokens), "--device", "cpu", "-q"]) == 0
    assert corpus_stage.main([str(synth_corpus / "manifest.jsonl"), "--tokens", str(tokens), "-o", str(corpus), "-q"]) == 0
    assert pretrain_stage.main([str(corpus), "-o", str(run), "--vocab", str(vocab), "--preset", "tiny", "--steps", "30",
                                "--batch-size", "16", "--lr", "2e-3", "--warmup", "3", "--eval-every", "0",
                                "--save-every", "0", "--device", "cpu", "-q"]) == 0
    assert distil_stage.main([str(run), "--corpus", str(corpus), "--steps", "20", "--batch-size", "8", "--warmup", "2",
                              "--save-every", "0", "--device", "cpu", "-q"]) == 0
    return {"run": run, "corpus": corpus, "labels": synth_corpus / "labels.jsonl", "vocab": vocab}
