"""``videobert run``: every stage in order into one run folder, skipping what is up to date.

A run config (YAML) names the corpus and holds one section per stage, each checked by that
stage's own config dataclass::

    manifest: data/my_corpus/manifest.jsonl     # or a `synth:` section to generate the corpus
    extract: {size: 224, s3d_weights: /models/s3d-d76dad2f.pth}
    vocab: {k: 12, depth: 4}
    pretrain: {preset: large, init: /models/bert-large-uncased}

Relative paths in the file are relative to the file's folder. Stages write into
``RUN/<folder>`` (``synth``, ``features``, ``vocab``, ``tokens``, ``transcripts``, ``corpus``,
``model``, ``model/dual``, ``eval`` and, when their sections are given, ``embed``, ``caption``, ``forecast``) and the runner records, in ``RUN/pipeline.json``, a hash of what each stage
was run with: its settings (less the fields that only change speed, :func:`videobert.config.settings`)
and the hashes of the stages it reads. A stage whose hash is unchanged and that finished is
skipped; a changed stage reruns, and so does every stage after it, because their hashes include
its hash. A stage that was interrupted with the same hash resumes in place (the stages are
resumable); one whose settings changed starts from an empty folder, its previous outputs moved
aside to ``RUN/.previous/<stage>-<time>/`` (deleted only by ``videobert prune RUN``). Extract,
whose inputs changed but settings did not, runs again in its folder, keeping the features of
unchanged videos and setting aside those of videos the corpus no longer lists.

The runner deletes nothing and writes into no folder it did not create: a non-empty RUN without
``pipeline.json`` (a ``configs/`` folder of your own included), or a stage folder that
``pipeline.json`` does not record, is refused. One run at a time: ``videobert run`` and ``videobert
prune`` hold the folder's lock (``RUN/.run.lock``) for their whole duration, and a second one is
refused. ``prune`` deletes only the ``<stage>-<time>`` folders that ``pipeline.json`` records as
set aside, never through a link.

Each stage is called in this process (its ``stage.run``); an ``execute`` hook given by the caller
can run it elsewhere — ``videobert run`` starts ``torchrun`` for the multi-GPU stages with the
command line the stage's launcher builds.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Any, Callable, Optional, Sequence

from videobert import config as cfgmod
from videobert.bars import BarResult, BarsConfig, check_run_bars
from videobert.config import field
from videobert.caption import stage as caption_stage
from videobert.caption.stage import CaptionSuiteConfig
from videobert.corpus import stage as corpus_stage
from videobert.corpus.reader import corpus_summary
from videobert.corpus.stage import CorpusConfig
from videobert.distil import stage as distil_stage
from videobert.distil.stage import DistilConfig
from videobert.embed import stage as embed_stage
from videobert.embed.stage import EmbedConfig
from videobert.errors import ConfigError, InputError, StageError, VideoBertError
from videobert.features import stage as features_stage
from videobert.forecast import stage as forecast_stage
from videobert.forecast.stage import ForecastConfig
from videobert.features.stage import ExtractConfig
from videobert.manifest import LABELS_FILE, ZERO_SHOT_FILE, read_manifest, spec_beside
from videobert.pretrain import stage as pretrain_stage
from videobert.pretrain.stage import PretrainConfig
from videobert.retrieval import stage as retrieval_stage
from videobert.retrieval.stage import EvaluateConfig
from videobert.readers import Field, check_field, check_fields, open_regular
from videobert.store import (
    FolderLock, StageCall, StageSummary, atomic_write_json, fsync_folder, read_failures, read_json,
)
from videobert.synthetic import stage as synthetic_stage
from videobert.synthetic.stage import SynthConfig
from videobert.text import stage as text_stage
from videobert.text.stage import AsrConfig
from videobert.vocab import stage as vocab_stage
from videobert.vocab.stage import TokenizeConfig, VocabConfig

log = logging.getLogger(__name__)

PREVIOUS = ".previous"  # RUN/.previous/<stage>-<time>: outputs a rerun replaced
LOCK_FILE = ".run.lock"  # held by videobert run and prune for their whole duration


@dataclass
class RunConfig:
    """Configuration of ``videobert run``: the corpus and one section per stage."""

    manifest: Optional[Path] = field(None, help="manifest (JSONL) or folder of videos; relative to the config file")
    synth: Optional[SynthConfig] = field(None, help="generate the synthetic corpus into RUN/synth and use it")
    labels: Optional[Path] = field(None, help="labels.jsonl for zero-shot evaluation (synth: its own labels)")
    zero_shot: Optional[Path] = field(None, help="zero-shot spec (template, slot and words per attribute) that classifies "
                                                 "the labels (default: zeroshot.yaml beside them; synth: its own)")
    segments: Optional[Path] = field(None, help="segments.jsonl (video_id, start, end, sentence, split) that embed and "
                                                "caption read (synth: its own narrated segments)")
    transcripts: Optional[Path] = field(None, help="folder of <video_id>.vtt transcripts for videos the manifest gives none")
    gpus: int = field(1, help="processes per node for extract, tokenize, corpus, pretrain and evaluate (>1: launched "
                              "with torchrun; 0: a CPU-only machine, every stage's device 'auto' means the CPU)")
    extract: ExtractConfig = field(default_factory=ExtractConfig, help="extract stage (see videobert extract --help)")
    vocab: VocabConfig = field(default_factory=VocabConfig, help="vocab stage")
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig, help="tokenize stage")
    asr: Optional[AsrConfig] = field(None, help="speech recognition for videos without a transcript (off when absent)")
    corpus: CorpusConfig = field(default_factory=CorpusConfig, help="corpus stage")
    pretrain: PretrainConfig = field(default_factory=PretrainConfig, help="pretrain stage")
    distil: Optional[DistilConfig] = field(default_factory=DistilConfig, help="distil stage: the dual encoder of fast "
                                                                              "search and the model's test_index (null: off)")
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig, help="evaluate stage")
    embed: Optional[EmbedConfig] = field(None, help="VideoBERT features of the segments (off when absent)")
    caption: Optional[CaptionSuiteConfig] = field(None, help="captioners on the embedded segments (off when absent; "
                                                             "needs embed)")
    forecast: Optional[ForecastConfig] = field(None, help="next-visual-word forecasting on a corpus split (off when absent)")
    bars: Optional[BarsConfig] = field(None, help="figures the finished run must reach (videobert.bars): printed beside "
                                                  "them, and the command exits 1 naming those missed (no stage reads it)")

    def check(self) -> None:
        if (self.manifest is None) == (self.synth is None):
            raise ConfigError("give exactly one of 'manifest' (your corpus) or 'synth' (generate the synthetic one)")
        if self.embed is not None and self.synth is None and self.segments is None:
            raise ConfigError("embed: needs 'segments' (a segments.jsonl of your videos) when the corpus is not synth's")
        if self.caption is not None and self.embed is None:
            raise ConfigError("caption: needs an 'embed' section (the captioners read its features)")
        if self.gpus < 0:
            raise ConfigError("gpus: need 0 (CPU only) or more")


def load_run_config(path: str | Path, assignments: Sequence[str] = ()) -> RunConfig:
    """Read a run config; relative paths (manifest, labels, transcripts, weights, init) are made
    relative to the file's folder."""
    path = Path(path)
    cfg = cfgmod.load(RunConfig, path, assignments=list(assignments))
    base = path.parent.absolute()

    def anchor(value):
        return value if value is None or Path(value).is_absolute() else base / value

    cfg.manifest, cfg.labels, cfg.transcripts = anchor(cfg.manifest), anchor(cfg.labels), anchor(cfg.transcripts)
    cfg.segments, cfg.zero_shot = anchor(cfg.segments), anchor(cfg.zero_shot)
    if cfg.extract.s3d_weights is not None:
        cfg.extract.s3d_weights = anchor(cfg.extract.s3d_weights)
    if cfg.pretrain.init != "scratch":
        cfg.pretrain.init = str(anchor(cfg.pretrain.init))
    if cfg.corpus.tokenizer is not None:
        cfg.corpus.tokenizer = anchor(cfg.corpus.tokenizer)
    return cfg


def speed_only_settings() -> dict[str, set[str]]:
    """Per stage, the settings that only change speed (``field(speed_only=True)``)."""
    hints = cfgmod.field_types(RunConfig)
    return {stage.name: cfgmod.speed_only_keys(_config_class(hints[stage.name])) for stage in STAGES}


def _config_class(tp: Any) -> type:
    return next(arg for arg in getattr(tp, "__args__", (tp,)) if arg is not type(None))


@dataclass(frozen=True)
class Stage:
    name: str
    folder: str
    reads: tuple[str, ...]  # stages whose outputs this one reads
    run: Callable[..., StageSummary]
    torchrun: bool = False  # shares its work out among torchrun ranks when gpus > 1
    outputs: tuple[str, ...] = ()  # files a finished folder holds (one written by an earlier version may lack them)
    # with the same settings and other inputs, runs again in its folder, keeping what is still valid
    # (extract keeps the features of every video whose file is unchanged) instead of from an empty one
    incremental: bool = False
    # an incremental stage's files of inputs no longer given (FOLDER, manifest): set aside after it runs
    unlisted: Callable[[Path, Path], list[Path]] | None = None


STAGES = (
    Stage("synth", "synth", (), synthetic_stage.run, outputs=("manifest.jsonl", LABELS_FILE, ZERO_SHOT_FILE)),
    Stage("extract", "features", ("synth",), features_stage.run, torchrun=True, incremental=True,
          unlisted=features_stage.unlisted_features),
    Stage("vocab", "vocab", ("extract",), vocab_stage.run),
    Stage("tokenize", "tokens", ("extract", "vocab"), vocab_stage.run_tokenize, torchrun=True),
    Stage("asr", "transcripts", ("synth",), text_stage.run),
    Stage("corpus", "corpus", ("synth", "tokenize", "asr"), corpus_stage.run, torchrun=True),
    Stage("pretrain", "model", ("corpus", "vocab"), pretrain_stage.run, torchrun=True),
    Stage("distil", "model/dual", ("pretrain", "corpus"), distil_stage.run, torchrun=True),
    Stage("evaluate", "eval", ("pretrain", "corpus", "distil"), retrieval_stage.run, torchrun=True),
    Stage("embed", "embed", ("pretrain", "tokenize", "extract"), embed_stage.run, torchrun=True),
    Stage("caption", "caption", ("embed",), caption_stage.run_suite),
    Stage("forecast", "forecast", ("pretrain", "corpus"), forecast_stage.run),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


def in_process(call: StageCall, procs: int) -> StageSummary:
    """Run a stage in this process (the default ``execute``)."""
    if procs > 1:
        raise ConfigError(f"{call.stage}: running {procs} processes needs a torchrun launcher (videobert run)")
    return call()


@dataclass
class StageResult:
    name: str
    status: str  # "ran", "skipped", "off", "failed", "interrupted"
    seconds: float = 0.0
    failures: int = 0
    folder: Path | None = None
    note: str = ""


def _fingerprint_inputs(manifest: Path | None, extra: Sequence[Path | None]) -> str:
    """Hash of the corpus as given: manifest bytes plus the path, size and modification time of
    every video and transcript, and of each ``extra`` file — nothing but the manifest is read, so
    the check costs a ``stat`` per file whatever the corpus's size (anything but a regular file
    counts by its name only: a FIFO is never opened, and the stage that reads it reports it)."""
    digest = hashlib.sha256()
    if manifest is not None:
        if _stat_regular(manifest) is not None:
            with open_regular(manifest, "manifest") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        for entry in read_manifest(manifest):
            digest.update(_file_key(entry.video))
            if entry.transcript is not None:
                digest.update(_file_key(entry.transcript))
    for path in extra:
        if path is not None:
            digest.update(_file_key(Path(path)))
    return digest.hexdigest()[:16]


def _fingerprint_videos(manifest: Path) -> str:
    """Hash of the videos a manifest (or folder) lists: sorted ids with their files' resolved path,
    size and modification time (a ``stat`` per video)."""
    digest = hashlib.sha256()
    for entry in sorted(read_manifest(manifest), key=lambda entry: entry.video_id):
        digest.update(f"{entry.video_id}|".encode() + _file_key(entry.video.resolve()))
    return digest.hexdigest()[:16]


def _file_key(path: Path) -> bytes:
    stat = _stat_regular(path)
    return f"{path}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}\n".encode()


def _stat_regular(path: Path) -> os.stat_result | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat if S_ISREG(stat.st_mode) else None


class Runner:
    """Runs the stages of ``cfg`` into ``run_dir``; ``execute(call, processes)`` runs one stage
    (default: :func:`in_process`), raising when it fails (a :class:`StageError` carries the exit
    code of a launched process)."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path,
                 execute: Callable[[StageCall, int], StageSummary | None] = in_process):
        self.cfg = cfg
        self.run_dir = Path(run_dir).absolute()
        self.execute = execute
        self.state_path = self.run_dir / "pipeline.json"
        self.state: dict[str, Any] = {}  # pipeline.json's stages, read under the folder's lock by run()
        self.previous: list[str] = []  # the folders of RUN/.previous this run folder's runs set aside
        self.hashes: dict[str, str] = {}
        self.results: list[StageResult] = []  # filled as stages finish, also when one fails

    # ------------------------------------------------------------------ paths and configs
    def folder(self, name: str) -> Path:
        return self.run_dir / next(s.folder for s in STAGES if s.name == name)

    @property
    def manifest(self) -> Path:
        return self.folder("synth") / "manifest.jsonl" if self.cfg.synth is not None else self.cfg.manifest

    @property
    def segments(self) -> Path | None:
        if self.cfg.segments is not None:
            return self.cfg.segments
        return self.folder("synth") / "segments.jsonl" if self.cfg.synth is not None else None

    @property
    def labels(self) -> Path | None:
        if self.cfg.labels is not None:
            return self.cfg.labels
        return self.folder("synth") / LABELS_FILE if self.cfg.synth is not None else None

    @property
    def zero_shot_spec(self) -> Path | None:
        """The spec that classifies the labels: the config's ``zero_shot``, else synth's own, else
        ``zeroshot.yaml`` beside the labels."""
        if self.cfg.zero_shot is not None:
            return self.cfg.zero_shot
        if self.cfg.labels is None and self.cfg.synth is not None:
            return self.folder("synth") / ZERO_SHOT_FILE
        return spec_beside(self.labels) if self.labels is not None else None

    def stage_config(self, name: str) -> Any:
        section = getattr(self.cfg, name)
        if self.cfg.gpus == 0 and getattr(section, "device", None) == "auto":
            section = dataclasses.replace(section, device="cpu")
        return section

    def enabled(self, name: str) -> bool:
        return self.stage_config(name) is not None

    def bar_results(self) -> list[BarResult]:
        """The finished run's figures beside its config's bars (none without a ``bars`` section)."""
        if self.cfg.bars is None:
            return []
        return check_run_bars(self.cfg.bars, self.folder("evaluate"),
                              self.folder("caption") if self.enabled("caption") else None,
                              self.folder("forecast") if self.enabled("forecast") else None)

    @functools.cached_property
    def inputs_fingerprint(self) -> str:
        """The manifest corpus's fingerprint, read once per run (asr and corpus share it)."""
        return _fingerprint_inputs(self.cfg.manifest, [])

    @functools.cached_property
    def videos_fingerprint(self) -> str:
        """What extract's features depend on: each video's id and file (path, size, modification
        time) — not the manifest's bytes, its order, transcripts or splits, so a folder and a
        manifest listing the same videos extract the same."""
        return _fingerprint_videos(self.cfg.manifest)

    @functools.cached_property
    def draws_splits(self) -> bool:
        """Whether the manifest leaves some video's split to the corpus stage's draw."""
        return self.cfg.synth is None and any(entry.split is None for entry in read_manifest(self.cfg.manifest))

    def _settings_hash(self, stage: Stage) -> str:
        """The stage's settings and the hashes of the stages it reads: what decides whether an
        ``incremental`` stage whose inputs changed may run again in its own folder."""
        upstream = {name: self.hashes.get(name) for name in stage.reads if self.enabled(name)}
        return cfgmod.config_hash({"settings": cfgmod.settings(self.stage_config(stage.name)), "upstream": upstream})

    def _hash(self, stage: Stage) -> str:
        settings = cfgmod.settings(self.stage_config(stage.name))
        upstream = {name: self.hashes.get(name) for name in stage.reads if self.enabled(name)}
        if stage.name == "extract" and self.cfg.synth is None:
            upstream["videos"] = self.videos_fingerprint
        if stage.name in ("asr", "corpus") and self.cfg.synth is None:
            upstream["inputs"] = self.inputs_fingerprint
            if stage.name == "corpus" and self.draws_splits:  # videos without a split get one drawn (corpus.splits)
                upstream["drawn_splits"] = True
            if stage.name == "corpus" and self.cfg.transcripts is not None:
                folder = Path(self.cfg.transcripts)
                files = sorted(folder.iterdir()) if folder.is_dir() else []
                upstream["transcripts"] = [str(folder), _fingerprint_inputs(None, files)]
        if stage.name == "vocab" and self.cfg.synth is None and getattr(self.stage_config("vocab"), "fit_split", "all") != "all":
            upstream["splits"] = sorted((entry.video_id, entry.split) for entry in read_manifest(self.cfg.manifest))
        if stage.name == "evaluate":
            upstream["labels"] = _fingerprint_inputs(None, [self.labels])
            upstream["zero_shot"] = _fingerprint_inputs(None, [self.zero_shot_spec])
        if stage.name == "embed":
            upstream["segments"] = _fingerprint_inputs(None, [self.segments])
        return cfgmod.config_hash({"settings": settings, "upstream": upstream})

    def call(self, name: str) -> StageCall:
        """How stage ``name`` is called: its inputs (the folders of the stages it reads), its
        folder, its config (also saved as ``configs/<stage>.yaml``) and options."""
        f = self.folder
        inputs: dict[str, Any] = {}
        options: dict[str, Any] = {}
        if name in ("extract", "asr"):
            inputs = {"manifest": self.manifest}
        elif name == "vocab":
            inputs, options = {"features_dir": f("extract")}, {"manifest": self.manifest}
        elif name == "tokenize":
            inputs = {"features_dir": f("extract"), "vocab_dir": f("vocab")}
        elif name == "corpus":
            inputs = {"manifest": self.manifest, "tokens_dir": f("tokenize")}
            options = {"transcripts_dir": f("asr") if self.enabled("asr") else self.cfg.transcripts}
        elif name == "pretrain":
            # checkpoints are left only when resuming with the same settings
            inputs, options = {"corpus_dir": f("corpus")}, {"vocab_dir": f("vocab"), "resume": (f("pretrain") / "checkpoints").is_dir()}
        elif name == "distil":
            inputs = {"model_dir": f("pretrain"), "corpus_dir": f("corpus")}
            options = {"resume": (f("distil") / "checkpoints").is_dir()}
        elif name == "evaluate":
            inputs = {"model_dir": f("pretrain"), "corpus_dir": f("corpus")}
            options = {"labels": self.labels, "zero_shot_spec": self.zero_shot_spec}
        elif name == "embed":
            inputs = {"model_dir": f("pretrain"), "segments": self.segments, "tokens": f("tokenize")}
            options = {"features": f("extract")}
        elif name == "caption":
            inputs = {"emb_dir": f("embed")}
        elif name == "forecast":
            inputs = {"model_dir": f("pretrain"), "corpus_dir": f("corpus")}
        stage = next(s for s in STAGES if s.name == name)
        return StageCall(name, stage.run, inputs, f(name), self.stage_config(name),
                         self.run_dir / "configs" / f"{name}.yaml", options)

    def split_shortfall(self, name: str) -> str | None:
        """Why stage ``name`` cannot run on the corpus's splits (distil needs 2 text-video
        examples in train, evaluate 2 in its split, forecast a video in its split), or None.
        Such a stage is skipped with a warning instead of failing the run; a corpus that cannot be
        read is left for the stage itself to report."""
        if name not in ("distil", "evaluate", "forecast") or not self.enabled(name):
            return None
        try:
            splits = corpus_summary(self.folder("corpus")).get("splits") or {}
        except VideoBertError:
            return None
        fix = ("give videos a split in the manifest ('split': 'test'), add videos, or raise corpus.test_share and "
               "corpus.val_share (the share of videos without a split drawn into test and val)")

        def count(split: str, key: str) -> int:
            value = (splits.get(split) or {}).get(key, 0)
            return value if isinstance(value, int) else 0

        if name == "distil" and count("train", "text_examples") < 2:
            return f"the train split has {count('train', 'text_examples')} text-video examples (distillation needs 2); {fix}"
        if name == "evaluate":
            split = self.cfg.evaluate.split
            if count(split, "text_examples") < 2:
                return f"the {split} split has {count(split, 'text_examples')} text-video segments (retrieval needs 2); {fix}"
        if name == "forecast":
            split = self.cfg.forecast.split
            if count(split, "videos") < 1:
                return f"the {split} split has no video to forecast; {fix}"
        return None

    # ------------------------------------------------------------------ running
    def _check_run_dir(self) -> None:
        """Refuse a folder this runner did not make, and stage folders it did not create."""
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(f"{self.run_dir}: run folder path exists and is not a folder")
        if not self.state_path.exists():
            others = sorted(p.name for p in self.run_dir.iterdir() if p.name != LOCK_FILE) if self.run_dir.is_dir() else []
            if others:
                raise ConfigError(
                    f"{self.run_dir}: not empty ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}) and not a run "
                    "folder (no pipeline.json); give a new or empty folder — nothing was changed")
            return
        for stage in STAGES:
            folder = self.folder(stage.name)
            if self.enabled(stage.name) and folder.exists() and stage.name not in self.state:
                raise ConfigError(
                    f"{folder}: this run did not create it (pipeline.json has no '{stage.name}' stage) and would write "
                    "into it; move it out of the run folder, or give it to the config as an input — nothing was changed")

    def _set_aside(self, name: str, folder: Path) -> Path:
        """Move a stage's previous outputs to ``RUN/.previous/<stage>-<time>`` (recorded in
        ``pipeline.json``, which is how ``prune`` knows what it may delete)."""
        target = self._set_aside_target(name)
        os.replace(folder, target)
        return target

    def _set_aside_target(self, name: str) -> Path:
        """A new ``RUN/.previous/<stage>-<time>`` name, recorded before anything is moved there."""
        previous = self.run_dir / PREVIOUS
        if previous.is_symlink() or (previous.exists() and not previous.is_dir()):
            raise ConfigError(f"{previous}: a link or a file, not the folder where the runner keeps earlier outputs; "
                              "move it away — nothing was changed")
        previous.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = previous / f"{name}-{stamp}"
        serial = 1
        while target.exists():
            serial += 1
            target = previous / f"{name}-{stamp}-{serial}"
        self.previous.append(target.name)
        self._save_state()
        return target

    def _set_aside_unlisted(self, name: str, folder: Path, files: list[Path]) -> None:
        """Move the outputs of inputs the corpus no longer lists from ``folder`` (run in place) to
        ``RUN/.previous/<stage>-<time>/``, so that later stages read only the corpus's own."""
        if not files:
            return
        kept = self._set_aside_target(name)
        kept.mkdir()
        for path in files:
            os.replace(path, kept / path.name)
        fsync_folder(kept)
        log.warning("%s: %d outputs of videos the corpus no longer lists (%s) were moved to %s (videobert prune %s "
                    "deletes them)", name, len(files), ", ".join(p.stem for p in files[:3]), kept, self.run_dir)

    def _save_state(self) -> None:
        atomic_write_json(self.state_path, {"stages": self.state, "config": cfgmod.to_dict(self.cfg),
                                            "previous": self.previous})

    def run(self, only: Sequence[str] | None = None, force: Sequence[str] = ()) -> list[StageResult]:
        """Run (or skip) every enabled stage in order. ``only``: run just these stages (the stages
        before them must be up to date); ``force``: rerun these stages and every one after them."""
        unknown = [name for name in [*(only or []), *force] if name not in STAGE_NAMES]
        if unknown:
            raise ConfigError(f"unknown stage '{unknown[0]}' (stages: {', '.join(STAGE_NAMES)})")
        if self.cfg.labels is not None and self.zero_shot_spec is None:
            raise ConfigError(f"labels: {self.cfg.labels} needs the zero-shot spec that classifies it: give 'zero_shot: "
                              f"SPEC.yaml' in the config or put a {ZERO_SHOT_FILE} beside it — nothing was changed")
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(f"{self.run_dir}: run folder path exists and is not a folder")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.run_dir / LOCK_FILE
        made_lock = not lock_path.exists()
        lock = FolderLock(lock_path)  # one run (or prune) of this folder at a time, for the whole run
        try:
            try:
                if self.state_path.exists():
                    data = read_pipeline_state(self.state_path)
                    self.state, self.previous = data["stages"], list(data.get("previous", []))
                self._check_run_dir()
            except VideoBertError:
                if made_lock and not self.state_path.exists():  # leave a refused folder as it was
                    lock_path.unlink(missing_ok=True)
                raise
            self._save_state()  # pipeline.json first: every file after it is the runner's own
            (self.run_dir / "configs").mkdir(exist_ok=True)
            return self._run_stages(only, force)
        finally:
            lock.release()

    def _run_stages(self, only: Sequence[str] | None, force: Sequence[str]) -> list[StageResult]:
        last_selected = max((STAGE_NAMES.index(name) for name in only), default=-1) if only is not None else -1
        forced_from = min((STAGE_NAMES.index(name) for name in force), default=len(STAGE_NAMES))
        results = self.results = []
        for index, stage in enumerate(STAGES):
            name = stage.name
            if not self.enabled(name):
                results.append(StageResult(name, "off"))
                continue
            current = self._hash(stage)
            self.hashes[name] = current
            recorded = self.state.get(name, {})
            folder = self.folder(name)
            up_to_date = (recorded.get("hash") == current and recorded.get("status") == "done" and folder.exists()
                          and all((folder / output).is_file() for output in stage.outputs))
            if index >= forced_from:
                up_to_date = False
            if only is not None and name not in only:
                if not up_to_date and index < last_selected:
                    raise StageError(
                        f"stage '{name}' is not up to date for this config; run it too (--stages) or run all stages"
                    )
                note = "not selected" if up_to_date or index < last_selected else "not selected, out of date"
                results.append(StageResult(name, "skipped", folder=folder, note=note))
                continue
            if up_to_date:
                log.info("%s: up to date (same config and inputs), skipped", name)
                if stage.incremental and "settings_hash" not in recorded:  # recorded by an earlier version
                    recorded["settings_hash"] = self._settings_hash(stage)  # the same hash: the same settings
                    self._save_state()
                results.append(StageResult(name, "skipped", recorded.get("seconds", 0.0), recorded.get("failures", 0), folder))
                continue
            shortfall = self.split_shortfall(name)
            if shortfall is not None:
                log.warning("%s: skipped: %s", name, shortfall)
                if folder.exists():  # an earlier run's figures are not this run's
                    kept = self._set_aside(name, folder)
                    self.state.pop(name, None)
                    self._save_state()
                    log.warning("%s: its previous outputs (another run's) were moved to %s", name, kept)
                results.append(StageResult(name, "skipped", folder=folder, note=shortfall.split(";")[0]))
                continue
            resumable = (recorded.get("hash") == current and recorded.get("status") in ("started", "failed")
                         and index < forced_from)
            settings_hash = self._settings_hash(stage)
            in_place = (stage.incremental and index < forced_from and recorded.get("settings_hash") == settings_hash
                        and not resumable)
            if in_place and folder.exists():
                log.info("%s: its inputs changed (same settings): running again in %s, keeping what is unchanged",
                         name, folder)
            if folder.exists() and not resumable and not in_place:
                reason = "forced" if index >= forced_from else "its config or inputs changed"
                kept = self._set_aside(name, folder)
                log.warning("%s: %s; its previous outputs were moved to %s (videobert prune %s deletes them)",
                            name, reason, kept, self.run_dir)
            call = self.call(name)
            cfgmod.save(call.cfg, call.config_file)
            self.state[name] = {"hash": current, "settings_hash": settings_hash, "status": "started",
                                "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
            self._save_state()
            procs = max(1, self.cfg.gpus) if stage.torchrun else 1
            resumes = resumable and _holds_work(folder)
            log.info("%s: running%s", name, " (resuming)" if resumes else "")
            began = time.perf_counter()
            try:
                self.execute(call, procs)
            except BaseException as exc:
                seconds = time.perf_counter() - began
                code = _exit_code(exc)
                reason = _first_line(exc)
                self.state[name].update(status="failed", seconds=round(seconds, 1), exit_code=code, error=reason)
                self._save_state()
                interrupted = isinstance(exc, KeyboardInterrupt) or code == 130
                results.append(StageResult(name, "interrupted" if interrupted else "failed", seconds, _failure_count(folder),
                                           folder, "rerun to resume" if interrupted else f"exit code {code}"))
                if isinstance(exc, KeyboardInterrupt):
                    raise
                raise StageError(f"stage '{name}' failed: {reason}; fix the cause and rerun to resume", code) from exc
            seconds = time.perf_counter() - began
            if stage.unlisted is not None:
                self._set_aside_unlisted(name, folder, stage.unlisted(folder, self.manifest))
            failures = _failure_count(folder)
            self.state[name].update(status="done", seconds=round(seconds, 1), failures=failures,
                                    finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
            self._save_state()
            results.append(StageResult(name, "ran", seconds, failures, folder))
        return results


# the names of the folders the runner sets aside: <stage>-<YYYYmmdd>-<HHMMSS>[-<serial>]
PREVIOUS_NAME = re.compile(rf"(?:{'|'.join(STAGE_NAMES)})-[0-9]{{8}}-[0-9]{{6}}(?:-[0-9]{{1,6}})?")
_STATE_FIELDS = {"stages": Field("dict"), "config": Field("dict", required=False), "previous": Field("list", required=False)}
_STAGE_FIELDS = {"hash": Field("str"), "settings_hash": Field("str", required=False), "status": Field("str"), "seconds": Field("number", 0, required=False),
                 "failures": Field("int", 0, required=False), "exit_code": Field("int", required=False)}


def read_pipeline_state(path: str | Path) -> dict[str, Any]:
    """``RUN/pipeline.json``, checked: ``stages`` maps stage names to ``{hash, status, ...}`` and
    ``previous`` lists folder names the runner set aside. Anything else is an :class:`InputError`
    naming the file and the field."""
    path = Path(path)
    data = check_fields(read_json(path, "pipeline state"), path, _STATE_FIELDS)
    for name, record in data["stages"].items():
        if name not in STAGE_NAMES:
            raise InputError(f"{path}: stages: {name[:40]!r} is not a stage of this version ({', '.join(STAGE_NAMES)})")
        check_fields(record, f"{path}: stages.{name}", _STAGE_FIELDS)
        if record["status"] not in ("started", "done", "failed"):
            raise InputError(f"{path}: stages.{name}.status: {record['status'][:40]!r} is not started, done or failed")
    for index, name in enumerate(data.get("previous", [])):
        check_field(name, Field("str"), path, f"previous[{index}]")
    return data


def prune(run_dir: str | Path, dry_run: bool = False) -> list[tuple[Path, int]]:
    """Delete the earlier outputs that reruns of ``run_dir`` moved to ``RUN/.previous``; returns
    each folder with its size in bytes. Only folders named ``<stage>-<time>`` that ``pipeline.json``
    records as set aside are deleted (in a folder of an earlier version, whose ``pipeline.json``
    records none, those named so), each only if it is a folder and not a link; anything else in
    ``.previous`` is left and named. Refuses a folder that is not a run folder, whose
    ``pipeline.json`` cannot be read, whose ``.previous`` is a link, or that a run is writing."""
    run_dir = Path(run_dir)
    state_path = run_dir / "pipeline.json"
    if not state_path.is_file():
        raise ConfigError(f"{run_dir}: not a run folder of videobert run (no pipeline.json); nothing was deleted")
    with FolderLock(run_dir / LOCK_FILE):
        try:
            state = read_pipeline_state(state_path)
        except InputError as exc:
            raise InputError(f"{exc}; nothing was deleted") from None
        previous = run_dir / PREVIOUS
        if previous.is_symlink() or (previous.exists() and not previous.is_dir()):
            raise ConfigError(f"{previous}: a link or a file, not the folder where the runner keeps earlier outputs; "
                              "nothing was deleted")
        recorded = state.get("previous")
        kept = []
        for path in sorted(previous.iterdir()) if previous.is_dir() else []:
            made = (S_ISDIR(os.lstat(path).st_mode) and PREVIOUS_NAME.fullmatch(path.name) is not None
                    and (recorded is None or path.name in recorded))
            if made:
                kept.append(path)
            else:
                log.warning("%s: left in place (not a folder that videobert run set aside)", path)
        sizes = [(path, _tree_size(path)) for path in kept]
        if not dry_run:
            for path, _ in sizes:
                if S_ISDIR(os.lstat(path).st_mode):  # never through a link, even one made since the listing
                    shutil.rmtree(path)
            if recorded is not None:
                deleted = {path.name for path, _ in sizes}
                atomic_write_json(state_path, {**state, "previous": [name for name in recorded if name not in deleted]})
    return sizes


def _tree_size(folder: Path) -> int:
    """Bytes of the files under ``folder``, links not followed."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            info = os.lstat(os.path.join(root, name))
            total += info.st_size if S_ISREG(info.st_mode) else 0
    return total


def _exit_code(exc: BaseException) -> int:
    """The exit code the stage's command ended, or would have ended, with (2 usage, 130 interrupted, 1 else)."""
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, ConfigError):
        return 2
    return exc.exit_code if isinstance(exc, StageError) else 1


def _first_line(exc: BaseException) -> str:
    """One line for an error: its message, with the type of an unexpected one."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, VideoBertError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _holds_work(folder: Path) -> bool:
    """Whether a stage folder holds anything a resumed run goes on from (more than its config and
    failure records)."""
    if not folder.is_dir():
        return False
    return any(not (path.name.startswith(".") or path.name == "config.yaml" or path.name.startswith("failures"))
               for path in folder.iterdir())


def _failure_count(folder: Path) -> int:
    """Items recorded as failed in a stage folder (0 when its records cannot be read)."""
    try:
        return len(read_failures(folder)) if folder.exists() else 0
    except VideoBertError as exc:
        log.warning("%s", exc)
        return 0


def summary_lines(results: Sequence[StageResult], run_dir: Path) -> list[str]:
    """A table of what ran, what was skipped, time and failures per stage."""
    width = max([8, *(len(result.status) for result in results)])
    lines = [f"{'stage':<10} {'status':<{width}} {'time':>8} {'failures':>8}  output"]
    for result in results:
        seconds = f"{result.seconds:7.1f}s" if result.status in ("ran", "failed", "interrupted") else ""
        folder = str(result.folder) if result.folder else ""
        lines.append(f"{result.name:<10} {result.status:<{width}} {seconds:>8} {result.failures:>8}  {folder}{'  ' + result.note if result.note else ''}")
    metrics = run_dir / "eval" / "metrics.json"
    if metrics.exists():
        lines.append(f"metrics: {metrics}")
    return lines
