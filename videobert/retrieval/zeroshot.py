"""Zero-shot attribute classification (paper §4.2): reading the masked-token head.

A template with masked words is followed by the video
of a labelled segment, ``[CLS] now the [MASK] [MASK] [MASK] [MASK] [>] v12 v40 … [SEP]``, and the
masked-token head is read at one mask slot per attribute. A spec (YAML) says, per attribute, which
slot to read and the candidate words of each class::

    template: now the [MASK] [MASK] [MASK] [MASK]
    attributes:
      colour: {slot: 1, classes: {red: [red], green: [green], ...}}
      action: {slot: 4, classes: {left: [left], grow: [bigger], ...}}

The slot's distribution is restricted to the attribute's candidate words (softmax over them) and a
class scores the sum of its words' probabilities. Top-1 and top-5 accuracy (top-5 over at most the
number of classes) are reported beside chance (1/classes, 5/classes) and the **text-only prior**:
the same template with no video, whose single fixed ranking is scored against every label — what
the language model alone guesses. An optional ``note`` (a string) says what a reader of the figures
should know about the spec — the synthetic corpus's says that its template is one of the
narrations' own phrasings — and is printed beside them. Labels come from a ``labels.jsonl`` (rows ``{video_id, start,
end, <attribute>: <class>, ...}``, as ``videobert synth`` writes); a segment's video is the visual
words of the clips overlapping ``[start, end)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from videobert.config import read_yaml, unknown_key_error
from videobert.corpus.align import overlapping_clips
from videobert.errors import ConfigError, InputError
from videobert.inputs import build_input
from videobert.inference import LoadedModel, forward_sequences
from videobert.store import read_jsonl

log = logging.getLogger(__name__)

MASK = "[MASK]"


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute: the template whose ``slot``-th ``[MASK]`` (1-based) is read, and the
    candidate words of each class."""

    name: str
    template: str
    slot: int
    classes: dict[str, tuple[str, ...]]


def load_spec(path: str | Path) -> list[AttributeSpec]:
    """Read a zero-shot spec (module docstring); malformed specs raise :class:`ConfigError`."""
    data = read_yaml(path)
    for key in data:
        if key not in ("template", "attributes", "note"):
            raise unknown_key_error(str(key), ["template", "attributes", "note"], str(path))
    if not isinstance(data.get("note", ""), str):
        raise ConfigError(f"{path}: note: expected a string")
    attributes = data.get("attributes")
    if not isinstance(attributes, dict) or not attributes:
        raise ConfigError(f"{path}: 'attributes' must map each attribute to its slot and classes")
    specs = []
    for name, entry in attributes.items():
        where = f"{path}: attributes.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with slot and classes")
        for key in entry:
            if key not in ("template", "slot", "classes"):
                raise unknown_key_error(str(key), ["template", "slot", "classes"], f"attributes.{name}")
        template = entry.get("template", data.get("template"))
        if not isinstance(template, str) or MASK not in template:
            raise ConfigError(f"{where}: needs a template (its own or the spec's) with at least one {MASK}")
        slot = entry.get("slot")
        masks = template.count(MASK) if template else 0
        if not isinstance(slot, int) or isinstance(slot, bool) or not 1 <= slot <= masks:
            raise ConfigError(f"{where}: slot must be 1 … {masks} (the {MASK} of the template to read), got {slot!r}")
        classes = entry.get("classes")
        if not isinstance(classes, dict) or len(classes) < 2:
            raise ConfigError(f"{where}: classes must map at least two class labels to their words")
        words: dict[str, tuple[str, ...]] = {}
        for label, candidates in classes.items():
            candidates = [candidates] if isinstance(candidates, str) else candidates
            if not isinstance(candidates, list) or not candidates or not all(isinstance(w, str) for w in candidates):
                raise ConfigError(f"{where}.classes.{label}: expected a word or a list of words")
            words[str(label)] = tuple(candidates)
        specs.append(AttributeSpec(str(name), template, slot, words))
    return specs


def spec_note(path: str | Path) -> str | None:
    """The spec's ``note`` (what a reader of its figures should know), or None."""
    note = read_yaml(path).get("note")
    return note.strip() if isinstance(note, str) and note.strip() else None


def template_input(loaded: LoadedModel, template: str, video_words: Sequence[int] | None) -> tuple[dict[str, np.ndarray], list[int]]:
    """The template (with the video when given) as a model input, and the positions of its masks."""
    loaded.vocab.warn_unknown(template, "template")
    text = loaded.vocab.encode_template(template)
    sequence = build_input(loaded.layout, text, video_words if video_words is not None and len(video_words) else None,
                           loaded.max_len)
    positions = np.flatnonzero(sequence["input_ids"] == loaded.layout.mask_id).tolist()
    return sequence, positions


def candidate_ids(loaded: LoadedModel, spec: AttributeSpec) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The classes that can be scored, the WordPiece id of each usable candidate word [W], and
    the class (index into those classes) of each [W].

    A candidate must be a single WordPiece of the run's vocabulary (one [MASK] predicts one
    piece); other words are left out, and so is a class left without words — both with a warning.
    """
    labels: list[str] = []
    ids, owners = [], []
    for label, words in spec.classes.items():
        usable = []
        for word in words:
            pieces = loaded.vocab.encode_text(word)
            if len(pieces) == 1 and pieces[0] != loaded.vocab.unk_id:
                usable.append(pieces[0])
            else:
                log.warning("zero-shot %s: %r is not one WordPiece of the model's vocabulary (%s); left out",
                            spec.name, word, " ".join(loaded.vocab.token(p) for p in pieces) or "no pieces")
        if not usable:
            log.warning("zero-shot %s: class %r has no candidate word the model can predict; left out", spec.name, label)
            continue
        ids += usable
        owners += [len(labels)] * len(usable)
        labels.append(label)
    return labels, np.array(ids, np.int64), np.array(owners, np.int64)


def class_scores(slot_logits: np.ndarray, ids: np.ndarray, owners: np.ndarray, n_classes: int) -> np.ndarray:
    """float64 [n, classes]: softmax over the candidate words, summed per class. slot_logits [n, vocab]."""
    candidate = torch.softmax(torch.from_numpy(np.asarray(slot_logits, np.float32)[:, ids]).double(), dim=-1).numpy()
    scores = np.zeros((candidate.shape[0], n_classes))
    for c in range(n_classes):
        scores[:, c] = candidate[:, owners == c].sum(axis=1)
    return scores


def top_k_accuracy(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the k best; ties counted pessimistically
    (a class tied with the true one ranks before it)."""
    true_score = scores[np.arange(len(truth)), truth]
    rank = (scores >= true_score[:, None]).sum(axis=1)
    return float((rank <= k).mean())


def segment_words(tokens: dict[str, np.ndarray], video_id: str, start: float, end: float, clip_seconds: float) -> np.ndarray:
    """Visual words of the clips overlapping ``[start, end)`` (clip i covers [i·cs, (i+1)·cs))."""
    words = tokens[video_id]
    clips = overlapping_clips(start, end, len(words), clip_seconds)
    return np.asarray(words[clips.start : clips.stop], dtype=np.int64)


def read_label_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a labels JSONL: each needs ``video_id``, ``start``, ``end``."""
    rows = []
    for number, row in read_jsonl(path, "labels file"):
        if not isinstance(row, dict) or not all(k in row for k in ("video_id", "start", "end")):
            raise InputError(f"{path}:{number}: a label row needs video_id, start and end")
        rows.append(row)
    return rows


def labelled_segments(
    rows: Sequence[dict[str, Any]], tokens: dict[str, np.ndarray], clip_seconds: float, video_ids: set[str] | None = None
) -> list[dict[str, Any]]:
    """The label rows (of ``video_ids`` when given) with the visual words of their span as
    ``video_words``; rows whose video has no visual words or whose span covers no clip are left out."""
    segments, missing = [], 0
    for row in rows:
        if video_ids is not None and row["video_id"] not in video_ids:
            continue
        if row["video_id"] not in tokens:
            missing += 1
            continue
        words = segment_words(tokens, row["video_id"], float(row["start"]), float(row["end"]), clip_seconds)
        if words.size:
            segments.append({**row, "video_words": words})
    if missing:
        log.warning("zero-shot: %d labelled segments belong to videos without visual words; left out", missing)
    return segments


def zero_shot(loaded: LoadedModel, specs: Sequence[AttributeSpec], segments: Sequence[dict[str, Any]]) -> dict[str, dict]:
    """Per attribute: ``top1``, ``top5``, ``chance_top1``, ``chance_top5``, ``prior_top1``,
    ``prior_top5``, ``classes`` (scored), ``left_out_classes`` (without a predictable word: none of
    its words is one WordPiece of the model's vocabulary), ``left_out_segments`` (labelled with one
    of those classes, so not scored), ``labelled_segments`` (with a label for the attribute),
    ``segments`` (scored) and ``predicted`` (how often each class was the top-1).

    Segments without a label for an attribute, or with a label outside its scored classes, do not
    count for it (logged).
    """
    results: dict[str, dict] = {}
    for spec in specs:
        labels, ids, owners = candidate_ids(loaded, spec)
        if len(labels) < 2:
            log.warning("zero-shot %s: fewer than two classes can be scored; skipped", spec.name)
            continue
        index = {label: c for c, label in enumerate(labels)}
        usable = [s for s in segments if str(s.get(spec.name)) in index]
        if len(usable) < len(segments):
            log.warning("zero-shot %s: %d of %d segments have no label among %s", spec.name,
                        len(segments) - len(usable), len(segments), ", ".join(labels))
        if not usable:
            log.warning("zero-shot %s: no labelled segment; skipped", spec.name)
            continue
        left_out = [label for label in spec.classes if label not in index]
        labelled = sum(s.get(spec.name) is not None for s in segments)
        left_out_segments = sum(str(s.get(spec.name)) in left_out for s in segments if s.get(spec.name) is not None)
        truth = np.array([index[str(s[spec.name])] for s in usable])
        sequences, positions = [], []
        for segment in usable:
            sequence, masks = template_input(loaded, spec.template, segment["video_words"])
            sequences.append(sequence)
            positions.append([masks[spec.slot - 1]])
        _, logits = forward_sequences(loaded, sequences, positions)
        scores = class_scores(np.concatenate(logits), ids, owners, len(labels))
        prior_input, prior_masks = template_input(loaded, spec.template, None)
        _, prior_logits = forward_sequences(loaded, [prior_input], [[prior_masks[spec.slot - 1]]])
        prior = np.repeat(class_scores(prior_logits[0], ids, owners, len(labels)), len(usable), axis=0)
        top5 = min(5, len(labels))
        predicted = np.bincount(scores.argmax(axis=1), minlength=len(labels))
        results[spec.name] = {
            "top1": top_k_accuracy(scores, truth, 1),
            "top5": top_k_accuracy(scores, truth, top5),
            "chance_top1": 1 / len(labels),
            "chance_top5": top5 / len(labels),
            "prior_top1": top_k_accuracy(prior, truth, 1),
            "prior_top5": top_k_accuracy(prior, truth, top5),
            "classes": len(labels),
            "left_out_classes": left_out,
            "left_out_segments": left_out_segments,
            "labelled_segments": labelled,
            "segments": len(usable),
            "predicted": {label: int(count) for label, count in zip(labels, predicted)},
        }
    return results
