"""A pretraining corpus from the synthetic generator's plans, built by the real corpus stage
without rendering any video.

Each 1.5 s clip gets a visual word that is a noisy function of what happens in it: ``colour·6 +
action`` of the segment it falls in with probability ``signal``, any other word otherwise; clips
between segments get background words ``36 … V-1``. The narration cues become the transcripts;
every ``silent_every``-th video has none and so gives video-only examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from videobert.corpus import CorpusConfig, build_corpus
from videobert.manifest import VideoEntry
from videobert.store import FailureLog, atomic_save_npy
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


def stand_in_centroids(vocab_size: int = 48, seed: int = 0) -> np.ndarray:
    """[V, 16] word vectors standing in for codebook centroids: like real ones they place words of
    the same colour or action close together (one-hot colour and action plus noise for the 36
    meaningful words, a shared 'background' direction for the others)."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(0, 0.3, (vocab_size, 16))
    for word in range(SIGNAL_WORDS):
        centroids[word, word // len(ACTIONS)] += 1
        centroids[word, len(COLOURS) + word % len(ACTIONS)] += 1
    centroids[SIGNAL_WORDS:, 12] += 1
    return centroids


def make_pretrain_corpus(out: Path, videos: int = 48, seed: int = 0, vocab_size: int = 48, signal: float = 0.8,
                         silent_every: int = 8) -> Path:
    """Write TOKENS/ and transcripts/ under ``out`` and the corpus into ``out/corpus``; returns it."""
    plans = plan_corpus(SynthConfig(videos=videos, seed=seed))
    tokens, transcripts = out / "tokens", out / "transcripts"
    tokens.mkdir(parents=True, exist_ok=True)
    transcripts.mkdir(parents=True, exist_ok=True)
    entries = []
    for plan in plans:
        rng = np.random.default_rng([seed, plan.index, 7])
        atomic_save_npy(tokens / f"{plan.video_id}.npy", visual_words(plan, rng, vocab_size, signal))
        transcript = None
        if plan.index % silent_every:
            transcript = transcripts / f"{plan.video_id}.vtt"
            write_webvtt(transcript, [s.narration for s in plan.segments if s.narration is not None])
        entries.append(VideoEntry(plan.video_id, out / f"{plan.video_id}.mp4", transcript, plan.split))
    (tokens / "tokens.json").write_text(json.dumps(
        {"vocab": None, "vocab_size": vocab_size, "fps": 20, "clip_frames": 30, "clip_seconds": CLIP_SECONDS}))
    corpus = out / "corpus"
    with FailureLog(out / "corpus-failures.jsonl") as failures:
        build_corpus(entries, tokens, corpus, CorpusConfig(wordpiece_min_frequency=1), failures)
    return corpus

