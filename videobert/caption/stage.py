"""The caption stage: EMB -> CAP (a trained captioner) -> captions and their metrics
(docs/formats.md).

* :func:`train` — a captioner on the train split of an EMB folder (``videobert embed``), reading
  the ``s3d`` part, the ``videobert`` part or ``both``; CAP holds ``config.json``,
  ``model.safetensors``, ``captioner.json`` (which features, from which EMB), the tokenizer of the
  VideoBERT run, and ``checkpoints/`` to resume from.
* :func:`evaluate` — beam search on a split, scored with the COCO caption toolkit beside two
  baselines that copy a train caption (:mod:`~videobert.caption.consensus`): the nearest neighbour
  (the caption of the train segment whose features are most similar, cosine over standardised
  features) and the consensus of the ``consensus_k`` nearest (the one of their captions most like
  the others, after Devlin et al. 2015): ``metrics.json`` and ``captions.jsonl``.
* :func:`run_suite` — what ``videobert run`` and the demo call: train and evaluate one captioner
  per feature choice into ``CAP/<features>/`` and gather the figures in ``CAP/metrics.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from videobert import config as cfgmod
from videobert.caption.beam import beam_search
from videobert.caption.consensus import consensus_captions, nearest_neighbour_captions
from videobert.caption.metrics import caption_metrics_sets
from videobert.caption.model import Captioner, CaptionerConfig
from videobert.caption.train import TrainingConfig, train_captioner
from videobert.config import field
from videobert.embed.stage import load_embeddings, part_slices
from videobert.errors import ConfigError, InputError
from videobert.training import list_checkpoints
from videobert.runtime import DeviceName, resolve_device
from videobert.store import StageSummary, atomic_write_json, atomic_write_text, jsonl_text, prepare_output_dir, read_json
from videobert.text.wordpiece import TEXT_SPECIALS, encode_texts, load_tokenizer

log = logging.getLogger(__name__)

FEATURES = ("s3d", "videobert", "both")
CAPTIONER_FILE = "captioner.json"
KINDS = ("captioner", "nearest_neighbour", "consensus")  # the captioner and its two baselines
CONSENSUS_K = 5  # chosen on the demo's val split (bench/caption_consensus.py; BENCHMARKS.md)


@dataclass
class CaptionConfig(TrainingConfig):
    """Configuration of ``videobert caption``: the features read, the network, its training, decoding."""

    features: Literal["s3d", "videobert", "both"] = field("both", help="parts of the EMB rows the encoder reads")
    hidden_size: int = field(256, help="width of encoder and decoder")
    encoder_layers: int = field(2, help="encoder layers")
    decoder_layers: int = field(2, help="decoder layers")
    heads: int = field(4, help="attention heads")
    intermediate_size: int = field(1024, help="feed-forward width")
    dropout: float = field(0.1, help="dropout")
    max_len: int = field(32, help="longest caption in WordPieces, [CLS] and [SEP] included")
    beam: int = field(5, help="beam width of decoding")
    length_penalty: float = field(0.6, help="alpha of the GNMT length penalty ((5 + length) / 6) ** alpha")
    device: DeviceName = field("auto", help="auto: the GPU if there is one")

    def check(self) -> None:
        TrainingConfig.check(self)
        if self.beam < 1 or self.max_len < 3:
            raise ConfigError("beam: need >= 1; max_len: need >= 3")


@dataclass
class CaptionSuiteConfig(CaptionConfig):
    """The caption section of a run config: one captioner per feature choice."""

    compare: list[str] = field(default_factory=lambda: list(FEATURES),
                               help="feature choices to train and evaluate, each beside the nearest-neighbour baseline")
    split: Literal["val", "test"] = field("test", help="split the captioners are evaluated on")
    consensus_k: int = field(CONSENSUS_K, help="train segments whose captions the consensus baseline chooses among (the "
                                               "one most like the others; 1: the nearest neighbour)")

    def check(self) -> None:
        CaptionConfig.check(self)
        if self.consensus_k < 1:
            raise ConfigError("consensus_k: need at least 1")
        if not self.compare or any(f not in FEATURES for f in self.compare):
            raise ConfigError(f"compare: need some of {', '.join(FEATURES)}, got {self.compare}")


# --------------------------------------------------------------------------- data
def encode_captions(tokenizer, rows: Sequence[dict[str, Any]], where: Path) -> list[list[int]]:
    """WordPiece ids of each row's sentence; a sentence with none is an error naming its row."""
    encoded = encode_texts(tokenizer, [str(r["sentence"]) for r in rows])
    for number, (row, ids) in enumerate(zip(rows, encoded), start=1):
        if not ids:
            raise InputError(f"{where}:{number}: the caption of segment {row['video_id']!r} {row['start']}-{row['end']} s "
                             f"(segments line {row.get('line', '?')}) is empty or has no WordPiece")
    return [list(ids) for ids in encoded]


def _features(emb_dir: Path, split: str, which: str, limit: int = 0) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """The ``which`` part of EMB's rows of ``split`` (the first ``limit``; 0: all) as float32, the
    rows' segments and ``embed.json``."""
    matrix, rows, meta = load_embeddings(emb_dir, split)
    columns = part_slices(meta, which)
    if not rows:
        raise InputError(f"{emb_dir / (split + '.jsonl')}: no {split} segments to caption")
    count = min(limit, len(rows)) if limit > 0 else len(rows)
    features = np.asarray(matrix[:count, columns], np.float32)
    bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad.size:
        first = rows[int(bad[0])]
        raise InputError(f"{emb_dir / (split + '.npy')}: {bad.size} row(s) hold NaN or infinity (the first, row {int(bad[0])}: "
                         f"{first.get('video_id')!r} {first.get('start')}-{first.get('end')} s); embed them again",
                         "non_finite")
    return features, rows[:count], meta


def _model_tokenizer(meta: dict[str, Any], emb_dir: Path) -> Path:
    folder = Path(meta["model"]) / "tokenizer"
    if not folder.is_dir():
        raise InputError(f"{emb_dir / 'embed.json'}: the model it was made with ({meta['model']}) has no tokenizer/ "
                         "folder any more; the captioner writes that model's WordPieces")
    return folder


# --------------------------------------------------------------------------- train
def train(emb_dir: str | Path, out_dir: str | Path, cfg: CaptionConfig, resume: bool = False,
          on_step=None) -> StageSummary:
    """Train a captioner on EMB's train split into ``out_dir`` (module docstring)."""
    began = time.perf_counter()
    emb_dir = Path(emb_dir)
    features, rows, meta = _features(emb_dir, "train", cfg.features)
    out = prepare_output_dir(out_dir)
    settings = cfgmod.settings(cfg)
    recorded = out / CAPTIONER_FILE
    if list_checkpoints(out):
        if not resume:
            raise ConfigError(f"{out}: holds a captioner's checkpoints; pass --resume to continue it, or write to "
                              "another folder")
        previous = read_json(recorded, "captioner") if recorded.exists() else {}
        if previous.get("settings") != settings or previous.get("embeddings") != str(emb_dir.resolve()):
            raise ConfigError(f"{out}: its checkpoints were made with other settings or embeddings; resume with the "
                              "same ones, or write to another folder")
    if not (out / "tokenizer").is_dir():
        shutil.copytree(_model_tokenizer(meta, emb_dir), out / "tokenizer")
    tokenizer = load_tokenizer(out / "tokenizer")
    captions = encode_captions(tokenizer, rows, emb_dir / "train.jsonl")
    vocab = tokenizer.get_vocab()
    columns = part_slices(meta, cfg.features)
    dims = [p["dim"] for p in meta["parts"] if cfg.features in ("both", p["name"])]
    assert sum(dims) == columns.stop - columns.start
    config = CaptionerConfig(dims, len(tokenizer), vocab["[CLS]"], vocab["[SEP]"], vocab["[PAD]"], cfg.hidden_size,
                             cfg.encoder_layers, cfg.decoder_layers, cfg.heads, cfg.intermediate_size, cfg.dropout,
                             cfg.max_len)
    atomic_write_json(recorded, {"features": cfg.features, "embeddings": str(emb_dir.resolve()), "parts": meta["parts"],
                                 "template": meta["template"],
                                 "columns": [columns.start, columns.stop], "settings": settings,
                                 "train_segments": len(rows), "complete": False})
    cfgmod.save(cfg, out / "config.yaml")
    device = resolve_device(cfg.device)
    model = train_captioner(features, captions, config, cfg, out, device, resume=resume, on_step=on_step)
    model.save_pretrained(out)
    atomic_write_json(recorded, {**read_json(recorded, "captioner"), "complete": True})
    message = f"captioner on {cfg.features} features: {cfg.steps} steps over {len(rows)} train captions"
    return StageSummary("caption", out, cfg.steps, 0, 0, time.perf_counter() - began, message, {"features": cfg.features})


def check_captioner_dir(cap_dir: Path) -> None:
    if not (cap_dir / CAPTIONER_FILE).is_file():
        raise InputError(f"{cap_dir}: not a captioner folder (no {CAPTIONER_FILE}; make one with videobert caption train)",
                         "missing")


def load_captioner(cap_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Captioner, Any, dict[str, Any]]:
    """A trained captioner, its tokenizer and ``captioner.json``."""
    cap_dir = Path(cap_dir)
    check_captioner_dir(cap_dir)
    info = read_json(cap_dir / CAPTIONER_FILE, "captioner")
    if not info.get("complete"):
        raise InputError(f"{cap_dir}: the captioner's training did not finish (videobert caption train --resume)")
    return Captioner.from_pretrained(cap_dir, device), load_tokenizer(cap_dir / "tokenizer"), info


# --------------------------------------------------------------------------- generate and evaluate
def generate(model: Captioner, tokenizer, features: np.ndarray, beam: int = 5, alpha: float = 0.6,
             batch_size: int = 64) -> list[str]:
    """A caption per row of ``features`` float [n, D] (beam search)."""
    device = next(model.parameters()).device
    banned = [tokenizer.convert_tokens_to_ids(t) for t in TEXT_SPECIALS if t not in ("[SEP]",)]
    captions: list[str] = []
    for begin in range(0, len(features), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(features[begin : begin + batch_size])).to(device)
        for ids in beam_search(model, chunk, beam, alpha, banned):
            captions.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
    return captions


def _segment_key(row: dict[str, Any]) -> str:
    return f"{row['video_id']}@{float(row['start']):.3f}-{float(row['end']):.3f}"


@dataclass
class SplitCaptions:
    """A captioner's and its baselines' captions of a split's segments, one per segment (rows that
    share a segment's span are its several references)."""

    rows: list[dict[str, Any]]
    references: dict[str, list[str]]  # segment key -> its sentences
    first_row: dict[str, int]  # segment key -> its first row
    captions: list[str]  # per row
    nearest: list[str]  # per row
    consensus: list[str]  # per row
    consensus_k: int

    def hypotheses(self, which: str) -> dict[str, str]:
        chosen = {"captioner": self.captions, "nearest_neighbour": self.nearest, "consensus": self.consensus}[which]
        return {key: chosen[i] for key, i in self.first_row.items()}


def caption_split(cap_dir: Path, emb_dir: Path | None, split: str, cfg: CaptionConfig,
                  consensus_k: int = CONSENSUS_K) -> tuple[SplitCaptions, Path, dict]:
    """Beam-search captions, nearest-neighbour and consensus captions of ``split``; also the EMB
    folder used and ``captioner.json``."""
    model, tokenizer, info = load_captioner(cap_dir, resolve_device(cfg.device))
    emb_dir = Path(emb_dir) if emb_dir is not None else Path(info["embeddings"])
    features, rows, meta = _features(emb_dir, split, info["features"])
    if [p for p in meta["parts"] if info["features"] in ("both", p["name"])] != \
            [p for p in info["parts"] if info["features"] in ("both", p["name"])]:
        raise InputError(f"{emb_dir / 'embed.json'}: its rows hold {meta['parts']}, the captioner read {info['parts']}")
    train_features, train_rows, _ = _features(emb_dir, "train", info["features"])
    captions = generate(model, tokenizer, features, cfg.beam, cfg.length_penalty)
    train_sentences = [r["sentence"] for r in train_rows]
    nearest = nearest_neighbour_captions(train_features, train_sentences, features)
    consensus = consensus_captions(train_features, train_sentences, features, consensus_k)
    references: dict[str, list[str]] = {}
    first_row: dict[str, int] = {}
    for i, row in enumerate(rows):
        key = _segment_key(row)
        references.setdefault(key, []).append(str(row["sentence"]))
        first_row.setdefault(key, i)
    return SplitCaptions(rows, references, first_row, captions, nearest, consensus, consensus_k), emb_dir, info


def decoding_config(cap_dir: str | Path, device: str = "auto", beam: int | None = None) -> CaptionConfig:
    """The captioner's own config (``CAP/config.yaml``) with the device and beam width a caller asks for."""
    cap_dir = Path(cap_dir)
    check_captioner_dir(cap_dir)
    cfg = cfgmod.load(CaptionConfig, cap_dir / "config.yaml")
    cfg.device = device
    if beam is not None:
        if beam < 1:
            raise ConfigError("--beam: need >= 1")
        cfg.beam = beam
    return cfg


def generate_captions(cap_dir: str | Path, emb_dir: str | Path | None, split: str, cfg: CaptionConfig, limit: int = 0,
                      out: str | Path | None = None) -> list[dict[str, Any]]:
    """The captions of ``split``'s segments of EMB (default: the EMB the captioner was trained on),
    the first ``limit`` of them (0: all): ``video_id``, ``start``, ``end``, ``caption``,
    ``sentence`` each; written as JSON Lines to ``out`` when given."""
    model, tokenizer, info = load_captioner(cap_dir, resolve_device(cfg.device))
    features, rows, _ = _features(Path(emb_dir) if emb_dir is not None else Path(info["embeddings"]), split,
                                  info["features"], limit)
    captions = generate(model, tokenizer, features, cfg.beam, cfg.length_penalty)
    found = [{"video_id": r["video_id"], "start": r["start"], "end": r["end"], "caption": c, "sentence": r["sentence"]}
             for r, c in zip(rows, captions)]
    if out is not None:
        atomic_write_text(out, jsonl_text(found))
    return found


def _write_evaluation(out_dir: Path, result: SplitCaptions, scores: dict[str, dict], split: str, features: str,
                      emb_dir: Path, cap_dir: Path, cfg: CaptionConfig) -> dict[str, Any]:
    metrics = {"split": split, "features": features, "segments": len(result.references),
               "captioner": scores["captioner"], "nearest_neighbour": scores["nearest_neighbour"],
               "consensus": scores["consensus"], "consensus_k": result.consensus_k,
               "embeddings": str(emb_dir.resolve()), "captioner_folder": str(cap_dir.resolve()),
               "beam": cfg.beam, "length_penalty": cfg.length_penalty}
    out = prepare_output_dir(out_dir)
    atomic_write_json(out / "metrics.json", metrics)
    rows = result.rows
    atomic_write_text(out / "captions.jsonl", jsonl_text(
        {"video_id": rows[i]["video_id"], "start": rows[i]["start"], "end": rows[i]["end"],
         "caption": result.captions[i], "nearest_neighbour": result.nearest[i], "consensus": result.consensus[i],
         "references": result.references[key]}
        for key, i in result.first_row.items()))
    return metrics


def evaluate(cap_dir: str | Path, emb_dir: str | Path | None, out_dir: str | Path | None, split: str = "test",
             cfg: CaptionConfig | None = None, consensus_k: int = CONSENSUS_K) -> StageSummary:
    """Caption ``split`` of EMB (default: the EMB the captioner was trained on) and score it
    beside the nearest-neighbour and consensus baselines into ``out_dir`` (default
    ``CAP/eval-<split>``): ``metrics.json`` and ``captions.jsonl``."""
    began = time.perf_counter()
    cap_dir = Path(cap_dir)
    check_captioner_dir(cap_dir)
    cfg = cfg or cfgmod.load(CaptionConfig, cap_dir / "config.yaml")
    if consensus_k < 1:
        raise ConfigError("--consensus-k: need at least 1")
    result, emb_dir, info = caption_split(cap_dir, emb_dir, split, cfg, consensus_k)
    scores = caption_metrics_sets(result.references, {which: result.hypotheses(which) for which in KINDS})
    out = Path(out_dir) if out_dir is not None else cap_dir / f"eval-{split}"
    metrics = _write_evaluation(out, result, scores, split, info["features"], emb_dir, cap_dir, cfg)
    return StageSummary("caption", out, len(result.references), 0, 0, time.perf_counter() - began,
                        "\n".join(format_report(metrics)), metrics)


def run_suite(emb_dir: str | Path, out_dir: str | Path, cfg: CaptionSuiteConfig) -> StageSummary:
    """One captioner per ``cfg.compare`` feature choice in ``out_dir/<features>/``, each trained
    (resuming a started one) and evaluated on ``cfg.split`` (all scored in one toolkit run); the
    figures in ``out_dir/metrics.json``."""
    began = time.perf_counter()
    out = prepare_output_dir(out_dir)
    cfgmod.save(cfg, out / "config.yaml")
    captioned: dict[str, tuple[SplitCaptions, CaptionConfig]] = {}
    for which in cfg.compare:
        single = dataclasses.replace(CaptionConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(CaptionConfig)}),
                                     features=which)
        folder = out / which
        info = folder / CAPTIONER_FILE
        if not (info.exists() and read_json(info, "captioner").get("complete")):
            train(emb_dir, folder, single, resume=True)
        captioned[which] = (caption_split(folder, Path(emb_dir), cfg.split, single, cfg.consensus_k)[0], single)
    first = next(iter(captioned.values()))[0]
    sets = {f"{which}/{kind}": result.hypotheses(kind)
            for which, (result, _) in captioned.items() for kind in KINDS}
    scores = caption_metrics_sets(first.references, sets)
    results = {}
    for which, (result, single) in captioned.items():
        mine = {kind: scores[f"{which}/{kind}"] for kind in KINDS}
        results[which] = _write_evaluation(out / which / f"eval-{cfg.split}", result, mine, cfg.split, which,
                                           Path(emb_dir), out / which, single)
    metrics = {"split": cfg.split, "by_features": results}
    atomic_write_json(out / "metrics.json", metrics)
    return StageSummary("caption", out, len(results), 0, 0, time.perf_counter() - began,
                        "\n".join(format_suite(metrics)), metrics)


# --------------------------------------------------------------------------- reports
def _figures(m: dict[str, Any]) -> str:
    meteor = f"{m['meteor']:.3f}" if m.get("meteor") is not None else "n/a"
    return (f"BLEU-3 {m['bleu3']:.3f}  BLEU-4 {m['bleu4']:.3f}  METEOR {meteor}  ROUGE-L {m['rouge_l']:.3f}  "
            f"CIDEr {m['cider']:.3f}")


def format_report(metrics: dict[str, Any]) -> list[str]:
    ours, nearest = metrics["captioner"], metrics["nearest_neighbour"]
    lines = [f"captioning ({metrics['split']}, {metrics['segments']} segments, {metrics['features']} features, "
             f"beam {metrics['beam']})",
             f"  captioner          {_figures(ours)}",
             f"  nearest neighbour  {_figures(nearest)}"]
    if "consensus" in metrics:
        lines.append(f"  consensus of {metrics['consensus_k']:<4}  {_figures(metrics['consensus'])}")
    if ours.get("meteor") is None and ours.get("meteor_note"):
        lines.append(f"  METEOR not computed: {ours['meteor_note']}")
    return lines


def format_suite(metrics: dict[str, Any]) -> list[str]:
    results = metrics["by_features"]
    if not results:
        return []
    first = next(iter(results.values()))
    lines = [f"captioning ({metrics['split']}, {first['segments']} segments; COCO caption toolkit, "
             f"tokenizer {first['captioner'].get('tokenizer', '?')})"]
    for which, m in results.items():
        lines.append(f"  {which:<9} captioner          {_figures(m['captioner'])}")
        lines.append(f"  {which:<9} nearest neighbour  {_figures(m['nearest_neighbour'])}")
        if "consensus" in m:
            lines.append(f"  {which:<9} consensus of {m['consensus_k']:<4}  {_figures(m['consensus'])}")
    note = first["captioner"].get("meteor_note")
    if first["captioner"].get("meteor") is None and note:
        lines.append(f"  METEOR not computed: {note}")
    return lines
