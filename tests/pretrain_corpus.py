"""Pretraining corpora from the synthetic generator's plans, built by the real stages without
rendering any video.

:func:`make_pretrain_corpus` (fast, controlled): each 1.5 s clip gets a visual word that is a
noisy function of what happens in it: ``colour·6 + action`` of the segment it falls in with
probability ``signal``, any other word otherwise; clips between segments get background words
``36 … V-1``.

:func:`make_feature_corpus` (the pipeline after extraction): each clip gets a 1024-d feature —
a colour direction plus an action direction plus the video's background plus noise, as S3D
features mix what moves with where — and the vocab, tokenize and corpus stages turn them into
visual words with codebook centroids.

In both, the narration cues become the transcripts; every ``silent_every``-th video has none and
so gives video-only examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from videobert import corpus as corpus_stage
from videobert import vocab as vocab_stage
from videobert.features import FEATURE_DIM
from videobert.manifest import VideoEntry, write_manifest
from videobert.store import atomic_save_npy
from videobert.synthetic import ACTIONS, COLOURS, SynthConfig, plan_corpus
from videobert.text import write_webvtt

CLIP_SECONDS = 1.5
SIGNAL_WORDS = len(COLOURS) * len(ACTIONS)  # 36


def visual_words(plan, rng: np.random.Generator, vocab_size: int, signal: float) -> np.ndarray:
    """int64 [n_clips]: the visual word of each clip of one planned video."""
    colours, actions = list(COLOURS), list(ACTIONS)
    clips = int(plan.duration // CLIP_SECONDS)
    words = rng.integers(SIGNAL_WORDS, vocab_size, size=clips)
    for segment in plan.segments:
        meaning = colours.index(segment.colour) * len(actions) + actions.index(segment.action)
        for clip in range(clips):
            middle = (clip + 0.5) * CLIP_SECONDS
            if segment.start <= middle < segment.end:
                words[clip] = meaning if rng.random() < signal else rng.integers(vocab_size)
    return words


def make_pretrain_corpus(out: Path, videos: int = 48, seed: int = 0, vocab_size: int = 48, signal: float = 0.8,
                         silent_every: int = 8) -> Path:
    """Write TOKENS/ and transcripts/ under ``out`` and the corpus into ``out/corpus``; returns it."""
    plans = plan_corpus(SynthConfig(videos=videos, seed=seed))
    tokens = out / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    for plan in plans:
        rng = np.random.default_rng([seed, plan.index, 7])
        atomic_save_npy(tokens / f"{plan.video_id}.npy", visual_words(plan, rng, vocab_size, signal))
    (tokens / "tokens.json").write_text(json.dumps(
        {"vocab": None, "vocab_size": vocab_size, "fps": 20, "clip_frames": 30, "clip_seconds": CLIP_SECONDS}))
    return _corpus(out, plans, tokens, silent_every)


def clip_features(plan, rng: np.random.Generator, directions: np.ndarray) -> np.ndarray:
    """float16 [n_clips, 1024]: colour + action directions (rows 0-5, 6-11 of ``directions``) of the
    segment a clip falls in, the video's background direction, and noise."""
    colours, actions = list(COLOURS), list(ACTIONS)
    clips = int(plan.duration // CLIP_SECONDS)
    background = rng.standard_normal(FEATURE_DIM) / np.sqrt(FEATURE_DIM)
    features = 0.5 * background + 0.4 * rng.standard_normal((clips, FEATURE_DIM)) / np.sqrt(FEATURE_DIM)
    for segment in plan.segments:
        meaning = directions[colours.index(segment.colour)] + directions[len(colours) + actions.index(segment.action)]
        for clip in range(clips):
            if segment.start <= (clip + 0.5) * CLIP_SECONDS < segment.end:
                features[clip] += meaning
    return features.astype(np.float16)


def make_feature_corpus(out: Path, videos: int = 48, seed: int = 0, k: int = 8, depth: int = 2,
                        silent_every: int = 8) -> tuple[Path, Path]:
    """FEATURES/, then VOCAB/ (k-means tree), TOKENS/ and the corpus under ``out``; returns
    (corpus folder, vocab folder)."""
    plans = plan_corpus(SynthConfig(videos=videos, seed=seed))
    rng = np.random.default_rng([seed, 11])
    directions = rng.standard_normal((len(COLOURS) + len(ACTIONS), FEATURE_DIM)) / np.sqrt(FEATURE_DIM)
    features = out / "features"
    features.mkdir(parents=True, exist_ok=True)
    for plan in plans:
        atomic_save_npy(features / f"{plan.video_id}.npy", clip_features(plan, np.random.default_rng([seed, plan.index]), directions))
    (features / "extract.json").write_text(json.dumps(
        {"fps": 20, "clip_frames": 30, "clip_seconds": CLIP_SECONDS, "size": 224, "model": "synthetic", "weights": "none"}))
    vocab, tokens = out / "vocab", out / "tokens"
    vocab_stage.run(features, vocab, vocab_stage.VocabConfig(k=k, depth=depth, niter=10, device="cpu", exemplars=False,
                                                             min_points_per_centroid=4, flat_compare_max_words=0, workers=1))
    vocab_stage.run_tokenize(features, vocab, tokens, vocab_stage.TokenizeConfig(device="cpu"))
    return _corpus(out, plans, tokens, silent_every), vocab


def _corpus(out: Path, plans, tokens: Path, silent_every: int) -> Path:
    transcripts = out / "transcripts"
    transcripts.mkdir(parents=True, exist_ok=True)
    entries = []
    for plan in plans:
        transcript = None
        if plan.index % silent_every:
            transcript = transcripts / f"{plan.video_id}.vtt"
            write_webvtt(transcript, [s.narration for s in plan.segments if s.narration is not None])
        entries.append(VideoEntry(plan.video_id, out / f"{plan.video_id}.mp4", transcript, plan.split))
    corpus = out / "corpus"
    write_manifest(out / "manifest.jsonl", entries)
    corpus_stage.run(out / "manifest.jsonl", tokens, corpus, corpus_stage.CorpusConfig(wordpiece_min_frequency=1))
    return corpus
