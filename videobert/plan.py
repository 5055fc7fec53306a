"""The plan of a run, before the heavy work: what a run config will make of its videos, and how long
its pretraining will take here.

``videobert run`` prints it first and ``videobert plan CONFIG`` prints it alone:

* **videos** and their total length — each video probed (PyAV reads the container's header; a
  seeded sample of ``probe_limit`` videos of a larger corpus, scaled up);
* **clips** of ``clip_frames / fps`` seconds that extraction will give;
* **visual words** the vocab stage will give for that many clips: the tree grows as
  :func:`videobert.vocab.kmeans.hierarchical_kmeans` grows it — a node splits into ``k`` only
  with at least ``k · min_points_per_centroid`` clips (and ``k``), to ``depth`` levels — counted
  here as if every split were even (real trees are uneven: take it as the order of magnitude);
* **corpus** examples: each transcript's sentences as the corpus stage cuts them (pause,
  max_words), and ``clips / video_only_words`` for a video without speech; the videos of each
  split, drawn as the corpus stage draws them (:mod:`videobert.corpus.splits`);
* **pretraining**: steps × the step time measured on this device in a few steps
  (:func:`videobert.pretrain.probe.measure_step`) → the estimated time;
* **memory**: the model's parameters, 16 bytes each for weights, gradients and AdamW's two
  moments in fp32, and the peak measured while timing the steps.

A hopeless plan gets a warning that names the setting to change: a vocabulary of fewer than
:data:`FEW_WORDS` words, pretraining on the CPU of more than a day, a test split that cannot be
evaluated.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videobert.corpus.splits import assign_splits
from videobert.corpus.stage import find_transcript
from videobert.errors import VideoBertError
from videobert.manifest import SPLITS, VideoEntry, read_manifest
from videobert.readers import bounded_lines, open_regular

log = logging.getLogger(__name__)

FEW_WORDS = 32  # fewer visual words than this cannot tell a corpus's scenes apart
CPU_DAY = 24 * 3600.0  # pretraining on a CPU longer than this is hopeless
BYTES_PER_PARAMETER = 16  # fp32 weights, gradients and AdamW's two moments


@dataclass
class Plan:
    """The plan's figures (``figures``: name → value, for tests and scripts), its lines and warnings."""

    figures: dict[str, Any] = field(default_factory=dict)
    lines: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def text(self) -> str:
        width = max((len(name) for name, _ in self.lines), default=0)
        return "\n".join(f"  {name:<{width}}  {value}" for name, value in self.lines)


def estimate_words(clips: int, k: int, depth: int, min_points_per_centroid: int) -> int:
    """Visual words a tree grown on ``clips`` clips gets when every split is even: a node of ``n``
    clips splits into ``k`` nodes of ``n / k`` while ``n >= max(k, k · min_points_per_centroid)``
    and levels remain."""
    too_few = max(k, k * min_points_per_centroid)
    nodes, size = 1, float(clips)
    for _ in range(depth):
        if size < too_few:
            break
        nodes, size = nodes * k, size / k
    return nodes


def suggest_min_points(clips: int, k: int, depth: int) -> int:
    """The largest ``min_points_per_centroid`` that still lets an even tree reach ``depth`` levels
    on ``clips`` clips (at least 1)."""
    return max(1, int(clips // (k ** depth)))


def _probe_videos(entries: list[VideoEntry], limit: int, seed: int) -> tuple[list[VideoEntry], dict[str, float], int]:
    """The probed sample of ``entries`` (all of them up to ``limit``) and their durations (seconds);
    the count that could not be probed."""
    from videobert.media import probe

    sample = entries
    if len(entries) > limit:
        rows = np.sort(np.random.default_rng([seed, 0x91A]).choice(len(entries), limit, replace=False))
        sample = [entries[i] for i in rows]
    durations, unreadable = {}, 0
    for entry in sample:
        try:
            info = probe(entry.video)
            seconds = info.video_duration if math.isfinite(info.video_duration) else info.duration
            durations[entry.video_id] = float(seconds or 0.0)
        except VideoBertError:
            unreadable += 1
    return sample, durations, unreadable


def _sentences(entry: VideoEntry, transcripts: Path | None, cfg) -> int | None:
    """Sentences of a video's transcript as the corpus stage cuts them; None without one."""
    from videobert.text.sentences import split_sentences
    from videobert.text.transcripts import read_transcript

    path = find_transcript(entry, transcripts)
    if path is None:
        return None
    try:
        return len(split_sentences(read_transcript(path), cfg.pause, cfg.max_words))
    except VideoBertError:
        return None


def make_plan(runner, measure: bool = True, probe_limit: int = 200) -> Plan:
    """The plan of ``runner``'s config (a :class:`videobert.runner.Runner`); ``measure``: time
    pretraining steps on this device (else the time is left out)."""
    cfg = runner.cfg
    plan = Plan()
    extract, vocab, corpus = runner.stage_config("extract"), runner.stage_config("vocab"), runner.stage_config("corpus")
    clip_seconds = extract.clip_frames / extract.fps

    # ------------------------------------------------------------------ videos and clips
    per_video: dict[str, dict[str, Any]] = {}
    if cfg.synth is not None:
        from videobert.synthetic import plan_corpus

        videos = plan_corpus(cfg.synth)
        total = len(videos)
        for video in videos:
            per_video[video.video_id] = {"seconds": video.duration, "split": video.split, "sentences": len(video.segments)}
        sampled, unreadable, source = total, 0, "generated by synth"
    else:
        entries = read_manifest(cfg.manifest)
        total = len(entries)
        transcripts = runner.cfg.transcripts
        entries, _ = assign_splits(entries, corpus.val_share, corpus.test_share, corpus.split_seed,
                                   has_text=lambda entry: find_transcript(entry, transcripts) is not None)
        sample, durations, unreadable = _probe_videos(entries, probe_limit, corpus.split_seed)
        asr = runner.enabled("asr")
        for entry in sample:
            if entry.video_id in durations:
                sentences = None if asr else _sentences(entry, transcripts, corpus)
                per_video[entry.video_id] = {"seconds": durations[entry.video_id], "split": entry.split,
                                             "sentences": sentences}
        sampled = len(sample)
        source = f"probed {sampled - unreadable}" + (f" of a sample of {sampled}" if sampled < total else "")
        if unreadable:
            source += f"; {unreadable} could not be read"
    scale = total / max(1, len(per_video)) if per_video else 0.0
    seconds = sum(v["seconds"] for v in per_video.values()) * scale
    for video in per_video.values():
        video["clips"] = int(math.floor(video["seconds"] * extract.fps + 1e-6)) // extract.clip_frames
    clips = int(round(sum(v["clips"] for v in per_video.values()) * scale))
    plan.figures.update(videos=total, seconds=seconds, clips=clips)
    plan.lines.append(("videos", f"{total:,}, {_duration(seconds)} in all ({source})"))
    plan.lines.append(("clips", f"{'about ' if scale != 1 else ''}{clips:,} of {clip_seconds:g} s "
                                f"({extract.clip_frames} frames at {extract.fps} fps)"))

    # ------------------------------------------------------------------ visual words
    trained_on = min(clips, vocab.sample)
    words = estimate_words(trained_on, vocab.k, vocab.depth, vocab.min_points_per_centroid)
    plan.figures["visual_words"] = words
    plan.lines.append(("visual words", f"about {words:,} (k {vocab.k}, depth {vocab.depth}: at most "
                                       f"{vocab.k ** vocab.depth:,}; a node splits with {vocab.k} × "
                                       f"min_points_per_centroid {vocab.min_points_per_centroid} = "
                                       f"{max(vocab.k, vocab.k * vocab.min_points_per_centroid):,} clips or more)"))
    if words < FEW_WORDS:
        better = suggest_min_points(trained_on, vocab.k, vocab.depth)
        gives = estimate_words(trained_on, vocab.k, vocab.depth, better)
        advice = (f"set vocab.min_points_per_centroid to {better} (about {gives:,} words)" if gives >= FEW_WORDS
                  and better < vocab.min_points_per_centroid else "lower vocab.k, or give it more videos")
        plan.warnings.append(
            f"vocab: the visual vocabulary would have about {words} words from {trained_on:,} clips — too few to tell "
            f"scenes apart; {advice} (vocab.k {vocab.k}, vocab.depth {vocab.depth}, vocab.min_points_per_centroid "
            f"{vocab.min_points_per_centroid})")

    # ------------------------------------------------------------------ corpus
    examples = {split: 0.0 for split in SPLITS}
    text_examples = {split: 0.0 for split in SPLITS}
    split_videos = {split: 0 for split in SPLITS}
    unknown_text = False
    for video in per_video.values():
        split = video["split"] or "train"
        split_videos[split] += 1
        if video["sentences"] is None and runner.enabled("asr"):
            unknown_text = True
        if video["sentences"]:
            examples[split] += video["sentences"]
            text_examples[split] += video["sentences"]
        else:
            examples[split] += max(1, video["clips"] // corpus.video_only_words) if video["clips"] else 0
    total_examples = int(round(sum(examples.values()) * scale))
    plan.figures.update(examples=total_examples, split_videos={s: int(round(n * scale)) for s, n in split_videos.items()},
                        text_examples={s: int(round(n * scale)) for s, n in text_examples.items()})
    splits_text = ", ".join(f"{split} {int(round(split_videos[split] * scale)):,}" for split in SPLITS)
    if unknown_text:
        plan.lines.append(("corpus", f"videos {splits_text}; sentences come from speech recognition (not estimated)"))
    else:
        plan.lines.append(("corpus", f"about {total_examples:,} examples ({int(round(sum(text_examples.values()) * scale)):,} "
                                     f"sentences with their clips); videos {splits_text}"))
        test_split = runner.cfg.evaluate.split
        if text_examples[test_split] * scale < 2:
            plan.warnings.append(
                f"corpus: the {test_split} split would have {int(text_examples[test_split] * scale)} sentences with "
                f"video, too few to evaluate retrieval (evaluate is then skipped); give videos a split in the manifest, "
                f"add videos with transcripts, or raise corpus.test_share ({corpus.test_share})")

    # ------------------------------------------------------------------ pretraining and memory
    pretrain = runner.stage_config("pretrain")
    text_vocab = _text_vocab_size(corpus)
    if measure:
        from videobert.pretrain.probe import measure_step

        try:
            step = measure_step(pretrain, text_vocab, words)
        except (VideoBertError, RuntimeError) as exc:
            plan.lines.append(("pretraining", f"{pretrain.steps:,} steps; the step could not be timed here ({exc})"))
            return plan
        total_seconds = step["step_seconds"] * pretrain.steps
        plan.figures.update(step_seconds=step["step_seconds"], pretrain_seconds=total_seconds,
                            parameters=step["parameters"], device=step["device"])
        scaled = f", scaled from {step['measured_batch']}" if step["measured_batch"] != pretrain.batch_size else ""
        plan.lines.append(("pretraining", f"{pretrain.steps:,} steps × {_seconds(step['step_seconds'])} a step "
                                          f"(measured here: {pretrain.preset}, batch {pretrain.batch_size}{scaled}, "
                                          f"{step['device']} {step['precision']}) = {_duration(total_seconds)}"))
        state = step["parameters"] * BYTES_PER_PARAMETER
        plan.lines.append(("memory", f"{step['parameters'] / 1e6:,.1f} M parameters: {_bytes(state)} for weights, "
                                     f"gradients and AdamW; {_bytes(step['peak_bytes'])} peak measured in the timed steps"))
        if step["device"] == "cpu" and total_seconds > CPU_DAY:
            fits = max(1, int(CPU_DAY / step["step_seconds"]))
            plan.warnings.append(
                f"pretrain: about {_duration(total_seconds)} on this CPU ({pretrain.steps:,} steps × "
                f"{_seconds(step['step_seconds'])}); a day holds about {fits:,} steps — lower pretrain.steps, choose a "
                f"smaller pretrain.preset (tiny, widened as in pipelines/configs/my_corpus_cpu.yaml) or "
                f"pretrain.batch_size, or run on a GPU (gpus)")
    else:
        plan.lines.append(("pretraining", f"{pretrain.steps:,} steps (not timed)"))
    return plan


def _text_vocab_size(corpus) -> int:
    """The text vocabulary's size: the given tokenizer's, else the trained WordPiece's largest."""
    if corpus.tokenizer is not None:
        vocab = Path(corpus.tokenizer).expanduser() / "vocab.txt"
        try:
            with open_regular(vocab, "tokenizer vocabulary") as handle:
                return sum(1 for _ in bounded_lines(handle, vocab))
        except VideoBertError:
            pass
    return corpus.wordpiece_vocab_size


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _seconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _bytes(count: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count / 1e3:.0f} kB"
