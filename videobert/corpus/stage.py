"""The corpus stage: MANIFEST + TOKENS (+ transcripts) -> CORPUS (docs/formats.md).

``run`` creates the folder, claims it for its inputs and settings (``corpus.json``: a rerun with
the same ones resumes, one with others starts the folder afresh), writes ``config.yaml`` and the
joint vocabulary (``vocabulary.json`` + ``tokenizer/``), builds this worker's shards and, once
every shard is there, merges their failure records into ``failures.jsonl`` and writes
``summary.json`` last. The layout and the readers are in :mod:`videobert.corpus.reader`.

* **Transcript of a video**: the manifest's ``transcript`` if it gives one; otherwise
  ``<video_id>.vtt`` (or ``.srt``, ``.json``, ``.jsonl``) in the ``transcripts`` folder (e.g. the
  output of ``videobert asr``); otherwise the video has no speech. A transcript that cannot be
  read, or a video that ``videobert asr`` recorded as failed for a reason other than having no
  audio stream (its record's ``kind``), is a failure, never taken for silence.
* **Sentences**: :func:`videobert.text.split_sentences` (``pause``, ``max_words``, and a local
  punctuation model with ``punctuator``).
* **Alignment**: :mod:`videobert.corpus.align`.
* **Splits** follow the manifest; a video without one (a folder of videos, a manifest without
  ``split``) gets one drawn from a hash of ``split_seed`` and its id (:mod:`videobert.corpus.splits`:
  ``test_share`` and ``val_share`` of them, an empty split filled from train where the corpus
  allows), so a video is in one split and adding videos never moves the others. ``splits.jsonl``
  lists every video's split and whether it was drawn; ``summary.json`` records the draw.
* **WordPiece**: a local BERT tokenizer folder (``tokenizer``), as the paper used BERT's, or one
  trained on the sentences of the train split's videos — all of them when they number at most
  ``wordpiece_sample``, else a seeded sample of videos taken until that many sentences.
* **Shards**: shard *s* holds the examples of the manifest's videos ``s·videos_per_shard …
  (s+1)·videos_per_shard - 1``, written whole under a temporary name and renamed into place with
  its own statistics and failure records. Worker *i* of *N* (``--shard I/N``, subdivided among
  torchrun ranks) builds the shards ``i, i+N, …``. A finished shard is never redone; an
  interrupted one is built again from its first video. The files hold no time of writing, so the
  same inputs give the same bytes whichever workers built which shards, in whatever order.
  Each transcript is read once while the shards are built (the WordPiece sample reads its own
  videos' transcripts beforehand).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from videobert import config as cfgmod
from videobert.config import field
from videobert.corpus.align import MAX_SENTENCES_PER_CLIP, cap_sentences, sentence_examples, video_only_examples
from videobert.corpus.columns import TableBuilder, write_table
from videobert.corpus.joint_vocab import JointVocabulary
from videobert.corpus.splits import assign_splits
from videobert.corpus.reader import (
    FIXED_COLUMNS, FORMAT, PLAN_FILE, RAGGED_COLUMNS, SHARDS, SPLITS_FILE, SUMMARY_FILE, VIDEO_COLUMNS, shard_path,
)
from videobert.errors import ConfigError, InputError, StageError
from videobert.logs import progress, progress_enabled
from videobert.manifest import SPLITS, TRANSCRIPT_EXTENSIONS, VideoEntry, read_manifest
from videobert.runtime import LONG_BARRIER, Shard, combined_shard, dist_env, process_group
from videobert.store import (
    StageSummary, atomic_write_json, atomic_write_text, create_once_json, failure_record, fsync_folder, jsonl_text,
    prepare_output_dir, read_json, read_jsonl, remove_stale_temporaries, temp_path_for, write_synced,
)
from videobert.text.sentences import Punctuator, SentenceConfig, split_sentences
from videobert.text.stage import asr_failures
from videobert.text.transcripts import Cue, read_transcript
from videobert.text.wordpiece import encode_texts, load_tokenizer, train_wordpiece
from videobert.vocab.stage import TokensInfo, read_tokens_info, video_tokens

log = logging.getLogger(__name__)


@dataclass
class CorpusConfig(SentenceConfig):
    """Configuration of ``videobert corpus``: how transcripts become sentences, then WordPiece and examples."""

    tokenizer: Path | None = field(
        None, help="local BERT tokenizer folder (vocab.txt or tokenizer.json); default: train WordPiece on the train split"
    )
    wordpiece_vocab_size: int = field(8000, help="trained WordPiece: largest vocabulary (smaller if the text supports fewer pieces)")
    wordpiece_min_frequency: int = field(2, help="trained WordPiece: fewest occurrences for a merged piece")
    wordpiece_sample: int = field(
        500_000, help="trained WordPiece: most sentences it is trained on (a seeded sample of the train videos when they hold more)")
    seed: int = field(0, help="seed of the WordPiece sample")
    lowercase: bool = field(True, help="trained WordPiece: lowercase (and strip accents) before tokenising")
    punctuator: Path | None = field(
        None, help="local Hugging Face token-classification punctuation model, for transcripts without punctuation (ASR)"
    )
    video_only_words: int = field(16, help="visual words per example for videos without speech (paper: 16)")
    test_share: float = field(0.1, neutral=True, help="videos the manifest gives no split: share drawn into test "
                                                      "(by a hash of split_seed and the video id)")
    val_share: float = field(0.1, neutral=True, help="videos the manifest gives no split: share drawn into val")
    split_seed: int = field(0, neutral=True, help="seed of the split drawn for videos the manifest gives none")
    videos_per_shard: int = field(
        1000, help="videos per shard: the unit written whole, resumed and shared out among workers (the examples do not change)")

    def check(self) -> None:
        if self.wordpiece_vocab_size < 16:
            raise ConfigError("wordpiece_vocab_size: must be at least 16")
        if self.wordpiece_min_frequency < 0:
            raise ConfigError("wordpiece_min_frequency: must be 0 or more")
        if self.wordpiece_sample < 1:
            raise ConfigError("wordpiece_sample: must be at least 1")
        SentenceConfig.check(self)
        if self.video_only_words < 1:
            raise ConfigError("video_only_words: must be at least 1")
        if self.videos_per_shard < 1:
            raise ConfigError("videos_per_shard: must be at least 1")
        if not (0 <= self.test_share < 1 and 0 <= self.val_share < 1 and self.test_share + self.val_share < 1):
            raise ConfigError("test_share, val_share: need 0 <= each and test_share + val_share < 1 (train keeps the rest)")


@dataclass(frozen=True)
class _Inputs:
    """What every shard of a run reads."""

    entries: Sequence[VideoEntry]
    info: TokensInfo
    transcripts_dir: Path | None
    failed_asr: dict[str, dict]
    cfg: CorpusConfig
    punctuator: object
    split_record: dict = dataclasses.field(default_factory=dict)  # how missing splits were drawn (splits.assign_splits)
    drawn_ids: frozenset = frozenset()  # the videos whose split was drawn


def run(manifest: str | Path, tokens_dir: str | Path, out_dir: str | Path, cfg: CorpusConfig,
        transcripts_dir: str | Path | None = None, shard: Shard = Shard(), overwrite: bool = False) -> StageSummary:
    """Build this worker's share of the corpus's shards (``shard``, subdivided among torchrun
    ranks) and, when every shard is there, finish the folder; the summary's ``details`` is then
    ``summary.json``. ``overwrite`` starts the folder afresh. Raises :class:`StageError` when the
    finished corpus holds no example."""
    began = time.perf_counter()
    env = dist_env()
    worker = combined_shard(shard, env)
    coordinated = env.has_rendezvous
    alone = worker.count == 1 or (coordinated and shard.count == 1)  # this run covers every shard
    if overwrite and not alone:
        raise ConfigError("--overwrite needs one run over all the videos (alone, or torchrun without --shard): "
                          "other shards' writers would not see it; delete the folder first instead")
    info = read_tokens_info(tokens_dir)
    transcripts_dir = Path(transcripts_dir) if transcripts_dir is not None else None
    if transcripts_dir is not None and not transcripts_dir.is_dir():
        raise InputError(f"{transcripts_dir}: transcripts folder not found", "missing")
    listed = read_manifest(manifest)
    entries, split_record = assign_splits(listed, cfg.val_share, cfg.test_share, cfg.split_seed,
                                          has_text=lambda entry: find_transcript(entry, transcripts_dir) is not None)
    drawn_ids = frozenset(entry.video_id for entry in listed if entry.split is None)
    if split_record["drawn"] and env.is_main and worker.index == 0:
        log.info("%d videos without a split in the manifest: drawn into test %g, val %g, train the rest (split_seed %d)%s",
                 split_record["drawn"], cfg.test_share, cfg.val_share, cfg.split_seed,
                 "".join(f"; {split} was empty and takes {', '.join(ids)} from train"
                         for split, ids in split_record["borrowed"].items()))
    failed_asr = asr_failures(transcripts_dir) if transcripts_dir is not None else {}
    punctuator = Punctuator(cfg.punctuator) if cfg.punctuator is not None else None
    inputs = _Inputs(entries, info, transcripts_dir, failed_asr, cfg, punctuator, split_record, drawn_ids)
    out = prepare_output_dir(out_dir)
    remove_stale_temporaries(out / SHARDS)
    shard_count = max(1, math.ceil(len(entries) / cfg.videos_per_shard))
    plan = corpus_plan(inputs, shard_count)

    with process_group(coordinated, "gloo", LONG_BARRIER) as group:
        if env.is_main:
            claim_corpus_dir(out, plan, restart=alone, overwrite=overwrite)
            if worker.index == 0:
                cfgmod.save(cfg, out / "config.yaml")
            tokenizer = claim_tokenizer(out, inputs)
        group.barrier()
        if not env.is_main:
            claim_corpus_dir(out, plan, restart=False)
            tokenizer = claim_tokenizer(out, inputs)
        vocabulary = JointVocabulary(tokenizer, info.vocab_size, visual_vocab=info.vocab)
        if cfg.tokenizer is None and len(tokenizer) <= len(vocabulary.special_ids) and env.is_main:
            log.warning("the train split has no text: the trained WordPiece vocabulary holds only the special tokens")

        mine = [s for s in range(shard_count) if s % worker.count == worker.index]
        todo = [s for s in mine if not shard_path(out, s, shard_count).is_dir()]
        counts = {"shards_built": len(todo), "shards_skipped": len(mine) - len(todo), "done": 0, "failed": 0,
                  "skipped": sum(len(_shard_entries(entries, s, cfg.videos_per_shard)) for s in mine if s not in todo)}
        if counts["shards_skipped"]:
            log.info("%d of this worker's %d shards are already built; skipping them", counts["shards_skipped"], len(mine))
        bar = progress(total=sum(len(_shard_entries(entries, s, cfg.videos_per_shard)) for s in todo),
                       desc="corpus", unit="video", disable=not (env.is_main and progress_enabled()))
        try:
            for index in todo:
                stats = build_shard(out, index, shard_count, vocabulary, inputs, bar)
                counts["done"] += stats["videos"]["total"] - stats["videos"]["failed"]
                counts["failed"] += stats["videos"]["failed"]
        finally:
            bar.close()
        group.barrier()
        totals = dict(zip(counts, (int(v) for v in group.sum(list(counts.values())))))
        summary = finish(out, plan, vocabulary, inputs, manifest, tokens_dir) if env.is_main else None

    seconds = time.perf_counter() - began
    built = f"{totals['shards_built']} shards built, {totals['shards_skipped']} already done"
    if summary is None:
        missing = sum(1 for s in range(shard_count) if not shard_path(out, s, shard_count).is_dir())
        message = (f"corpus: worker {worker}: {built}; {missing} of {shard_count} shards are still to be built by "
                   f"other workers (summary.json is written when all are there); in {seconds:.1f} s")
        return StageSummary("corpus", out, totals["done"], totals["skipped"], totals["failed"], seconds, message, {})
    splits = summary["splits"]
    videos = summary["videos"]
    message = (
        f"corpus: {summary['examples']} examples (train {splits['train']['examples']}, val {splits['val']['examples']}, "
        f"test {splits['test']['examples']}) from {videos['total']} videos ({videos['with_speech']} with speech, "
        f"{videos['video_only']} video-only, {videos['failed']} failed); "
        f"{summary['words_per_sentence']['mean']:.1f} words and {summary['clips_per_sentence']['mean']:.1f} clips per sentence; "
        f"{summary['dropped_sentences']['outside_clips']} sentences outside the clips dropped"
        f"{_over_clips(summary['dropped_sentences'])}; joint vocabulary "
        f"{vocabulary.size} = {vocabulary.text_vocab_size} text + [>] + {vocabulary.visual_vocab_size} visual; "
        f"{built}; in {seconds:.1f} s"
    )
    return StageSummary("corpus", out, totals["done"], totals["skipped"], totals["failed"], seconds, message, summary)


def _shard_entries(entries: Sequence[VideoEntry], index: int, videos_per_shard: int) -> Sequence[VideoEntry]:
    return entries[index * videos_per_shard : (index + 1) * videos_per_shard]


# ---------------------------------------------------------------------------------------------- the folder's claim
def corpus_plan(inputs: _Inputs, shard_count: int) -> dict[str, Any]:
    """What the folder is built from (``corpus.json``): the manifest's videos, their transcripts
    (path, size and modification time), the TOKENS folder, the settings and the shards."""
    manifest = hashlib.sha256()
    transcripts = hashlib.sha256()
    for entry in inputs.entries:
        manifest.update(json.dumps([entry.video_id, entry.split, str(entry.transcript)]).encode())
        path = find_transcript(entry, inputs.transcripts_dir)
        try:
            stat = os.stat(path) if path is not None else None
            transcripts.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode() if stat else b"-\n")
        except OSError:
            transcripts.update(f"{path}|unreadable\n".encode())
    if inputs.transcripts_dir is not None:
        for path in sorted(inputs.transcripts_dir.glob("failures*.jsonl")):
            stat = os.stat(path)
            transcripts.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return {
        "format": FORMAT,
        "videos": len(inputs.entries),
        "videos_per_shard": inputs.cfg.videos_per_shard,
        "shards": shard_count,
        "manifest": manifest.hexdigest(),
        "transcripts": transcripts.hexdigest(),
        "tokens": {"folder": str(inputs.info.folder.absolute()), "codebook": inputs.info.codebook,
                   "vocab_size": inputs.info.vocab_size, "clip_seconds": inputs.info.clip_seconds},
        "settings": cfgmod.settings(inputs.cfg),
    }


def claim_corpus_dir(out: Path, plan: dict[str, Any], restart: bool, overwrite: bool = False) -> None:
    """Record ``plan`` as the folder's ``corpus.json``, or check that the one there is the same.

    The first writer creates the file (exclusively: concurrent workers never overwrite each
    other's). A folder started from other inputs or settings, or by an earlier version, is
    started afresh when this run covers every shard (``restart``; always with ``overwrite``) and
    refused otherwise, naming what differs.
    """
    path = out / PLAN_FILE
    if overwrite:
        _clear(out, "--overwrite")
    elif not path.exists() and ((out / "train.jsonl").exists() or (out / SUMMARY_FILE).exists() or (out / SHARDS).exists()):
        if not restart:
            raise ConfigError(f"{out} holds a corpus of an earlier videobert or an unfinished one without {PLAN_FILE}; "
                              "build it with one worker (no --shard), or use another folder")
        _clear(out, "it holds a corpus of an earlier version")
    create_once_json(path, plan)
    recorded = read_json(path, "corpus plan")
    changed = _first_difference(recorded, plan)
    if changed is None:
        return
    if not restart:
        raise ConfigError(f"{out} was started with other {changed} than this run's; run every worker with the same "
                          "inputs and settings, start it afresh with one worker (--overwrite), or use another folder")
    _clear(out, f"its {changed} changed")
    claim_corpus_dir(out, plan, restart=False)


def _first_difference(recorded: Any, plan: dict[str, Any]) -> str | None:
    if not isinstance(recorded, dict):
        return "a plan"
    names = {"manifest": "manifest videos", "transcripts": "transcripts", "tokens": "visual words (TOKENS)"}
    for key, value in plan.items():
        if recorded.get(key) != value:
            if key == "settings":
                keys = sorted(k for k in value if (recorded.get(key) or {}).get(k) != value[k])
                return "settings (" + ", ".join(keys) + ")"
            return names.get(key, key)
    return None


def _clear(out: Path, reason: str) -> None:
    """Remove what the corpus stage wrote into ``out`` (and nothing else), saying why."""
    names = [SUMMARY_FILE, "failures.jsonl", "vocabulary.json", PLAN_FILE, SPLITS_FILE, *(f"{s}.jsonl" for s in SPLITS)]
    present = [name for name in names if (out / name).exists()] + [d for d in (SHARDS, "tokenizer") if (out / d).is_dir()]
    if not present:
        return
    log.warning("%s: starting the corpus afresh (%s): removing %s", out, reason, ", ".join(present))
    (out / SUMMARY_FILE).unlink(missing_ok=True)  # first: the folder stops being a finished corpus
    for name in names:
        (out / name).unlink(missing_ok=True)
    for folder in (SHARDS, "tokenizer"):
        if (out / folder).is_dir():
            shutil.rmtree(out / folder)


def claim_tokenizer(out: Path, inputs: _Inputs):
    """The run's WordPiece tokenizer: the one already in the folder (an earlier run or another
    worker wrote it from the same plan), else the given BERT tokenizer or one trained on the
    WordPiece sample, written to ``tokenizer/`` (a folder renamed into place whole) with
    ``vocabulary.json``. Two workers that wrote it at once must agree, piece for piece."""
    folder = out / "tokenizer"
    if folder.is_dir() and (out / "vocabulary.json").is_file():
        return JointVocabulary.load(out).tokenizer
    cfg = inputs.cfg
    if cfg.tokenizer is not None:
        tokenizer = load_tokenizer(Path(cfg.tokenizer).expanduser())
    else:
        texts = wordpiece_sample(inputs)
        log.info("training WordPiece on %d sentences", len(texts))
        tokenizer = train_wordpiece(texts, cfg.wordpiece_vocab_size, cfg.wordpiece_min_frequency, cfg.lowercase)
    vocabulary = JointVocabulary(tokenizer, inputs.info.vocab_size, visual_vocab=inputs.info.vocab)
    tmp = temp_path_for(folder)
    tokenizer.save_pretrained(str(tmp))
    pieces = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    (tmp / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    try:
        os.rename(tmp, folder)
    except OSError:  # another worker's is there already
        shutil.rmtree(tmp, ignore_errors=True)
        theirs = load_tokenizer(folder)
        if theirs.get_vocab() != tokenizer.get_vocab():
            raise StageError(f"{folder}: another worker wrote a different WordPiece vocabulary from the same inputs; "
                             "start the corpus afresh with one worker (--overwrite)") from None
        tokenizer = theirs
    atomic_write_json(out / "vocabulary.json", vocabulary.to_json())
    return tokenizer


def wordpiece_sample(inputs: _Inputs) -> list[str]:
    """The sentences WordPiece is trained on: those of the train split's videos in manifest order
    when they number at most ``wordpiece_sample``; otherwise those of train videos drawn in a
    seeded order until that many sentences (the last video's cut short), in manifest order.
    Unreadable transcripts are skipped here (the shards record them)."""
    cfg = inputs.cfg
    train = [entry for entry in inputs.entries if entry.split == "train"]
    order = np.random.default_rng([cfg.seed, 0x3D9]).permutation(len(train))
    taken: dict[int, list[str]] = {}
    total = 0
    for position in order:
        if total >= cfg.wordpiece_sample:
            break
        try:
            sentences = video_sentences(train[position], inputs.transcripts_dir, inputs.failed_asr, cfg, inputs.punctuator)
        except InputError:
            continue
        texts = [sentence.text for sentence in sentences][: cfg.wordpiece_sample - total]
        taken[int(position)] = texts
        total += len(texts)
    return [text for position in sorted(taken) for text in taken[position]]


# ---------------------------------------------------------------------------------------------- one shard
def build_shard(out: Path, index: int, count: int, vocabulary: JointVocabulary, inputs: _Inputs, bar=None) -> dict:
    """Build shard ``index`` of ``count`` (docs/formats.md) into a temporary folder and rename it
    into place; returns its statistics (its ``stats.json``)."""
    cfg, info, tokenizer = inputs.cfg, inputs.info, vocabulary.tokenizer
    tables = {split: TableBuilder(FIXED_COLUMNS, RAGGED_COLUMNS) for split in SPLITS}
    names = {split: TableBuilder({}, VIDEO_COLUMNS) for split in SPLITS}
    failures: list[dict] = []
    per_split = {split: Counter() for split in SPLITS}
    tallies = {name: Counter() for name in _TALLIES}
    dropped, videos = Counter(), Counter()

    def failed(video_id: str, reason: str, kind: str) -> None:
        failures.append(failure_record(video_id, reason, kind, timed=False))
        log.warning("%s: %s", video_id, reason)
        videos["failed"] += 1

    for entry in _shard_entries(inputs.entries, index, cfg.videos_per_shard):
        if bar is not None:
            bar.update(1)
        split = entry.split
        try:
            words = video_tokens(info, entry.video_id)
            sentences = video_sentences(entry, inputs.transcripts_dir, inputs.failed_asr, cfg, inputs.punctuator)
        except InputError as exc:
            failed(entry.video_id, str(exc), exc.kind)
            continue
        if sentences:
            sentences, cut = cap_sentences(sentences, len(words), info.clip_seconds)
            if cut:
                dropped["over_clips"] += cut
                log.warning("%s: %d sentences cut: more than %d per clip over the same clips (a cue cut into many "
                            "sentences of the same seconds?)", entry.video_id, cut, MAX_SENTENCES_PER_CLIP)
            encoded = encode_texts(tokenizer, [s.text for s in sentences])
            examples, dropped_here = sentence_examples(entry.video_id, sentences, encoded, words, info.clip_seconds)
            dropped += dropped_here
            if not examples:
                failed(entry.video_id, f"none of its {len(sentences)} sentences overlaps its {len(words)} clips "
                       f"(0 … {len(words) * info.clip_seconds:.1f} s); is the transcript this video's?", "no_overlap")
                continue
            for example in examples:
                tallies["words_per_sentence"][len(example["text"].split())] += 1
                tallies["wordpieces_per_sentence"][len(example["text_ids"])] += 1
                tallies["clips_per_sentence"][len(example["video_ids"])] += 1
            tallies["sentences_per_video"][len(examples)] += 1
            videos["with_speech"] += 1
        else:
            examples = video_only_examples(entry.video_id, words, info.clip_seconds, cfg.video_only_words)
            videos["video_only"] += 1
        number = names[split].rows
        names[split].add(video_name=entry.video_id)
        for example in examples:
            tables[split].add(video=number, **{k: example[k] for k in (*FIXED_COLUMNS, *RAGGED_COLUMNS) if k != "video"})
        per_split[split]["videos"] += 1
        per_split[split]["examples"] += len(examples)
        per_split[split]["text_examples" if sentences else "video_only_examples"] += len(examples)

    videos["total"] = len(_shard_entries(inputs.entries, index, cfg.videos_per_shard))
    stats = {
        "videos": {k: videos[k] for k in ("total", "with_speech", "video_only", "failed")},
        "splits": {split: {k: per_split[split][k] for k in _SPLIT_COUNTS} for split in SPLITS},
        **{name: {str(value): tally[value] for value in sorted(tally)} for name, tally in tallies.items()},
        "dropped_sentences": {k: dropped[k] for k in ("outside_clips", "no_wordpieces", "over_clips")},
    }
    final = shard_path(out, index, count)
    tmp = temp_path_for(final)
    try:
        for split in SPLITS:
            write_table(tmp / split, {**tables[split].arrays(), **names[split].arrays()})
        write_synced(tmp / "stats.json", json.dumps(stats, indent=2) + "\n")
        write_synced(tmp / "failures.jsonl", jsonl_text(failures))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_folder(final.parent)
    return stats


_TALLIES = ("sentences_per_video", "words_per_sentence", "wordpieces_per_sentence", "clips_per_sentence")
_SPLIT_COUNTS = ("videos", "examples", "text_examples", "video_only_examples")


# ---------------------------------------------------------------------------------------------- the finished folder
def finish(out: Path, plan: dict[str, Any], vocabulary: JointVocabulary, inputs: _Inputs, manifest: str | Path,
           tokens_dir: str | Path) -> dict[str, Any] | None:
    """Once every shard is built: ``failures.jsonl`` (the shards' records in shard order) and
    ``summary.json`` (their statistics together), written last; None while shards are missing."""
    folders = [shard_path(out, s, plan["shards"]) for s in range(plan["shards"])]
    if not all(folder.is_dir() for folder in folders):
        return None
    videos, dropped = Counter(), Counter()
    per_split = {split: Counter() for split in SPLITS}
    tallies = {name: Counter() for name in _TALLIES}
    failure_lines = []
    for folder in folders:
        stats = read_json(folder / "stats.json", "corpus shard statistics")
        videos.update(stats["videos"])
        dropped.update(stats["dropped_sentences"])
        for split in SPLITS:
            per_split[split].update(stats["splits"][split])
        for name in _TALLIES:
            tallies[name].update({int(value): count for value, count in stats[name].items()})
        failure_lines += [json.dumps(record, ensure_ascii=False) for _, record in read_jsonl(folder / "failures.jsonl",
                                                                                                 "failure records")]
    atomic_write_text(out / "failures.jsonl", "".join(line + "\n" for line in failure_lines))
    atomic_write_text(out / SPLITS_FILE, jsonl_text(
        [{"video_id": entry.video_id, "split": entry.split, "drawn": entry.video_id in inputs.drawn_ids}
         for entry in inputs.entries]))
    total = sum(per_split[split]["examples"] for split in SPLITS)
    if not total:
        raise StageError(f"no example could be made from {len(inputs.entries)} videos (see {out / 'failures.jsonl'})")
    cfg = inputs.cfg
    summary = {
        "format": FORMAT,
        "videos": {k: videos[k] for k in ("total", "with_speech", "video_only", "failed")},
        "examples": total,
        "splits": {split: {k: per_split[split][k] for k in _SPLIT_COUNTS} for split in SPLITS},
        **{name: _stats(tallies[name]) for name in _TALLIES},
        "dropped_sentences": {k: dropped[k] for k in ("outside_clips", "no_wordpieces", "over_clips")},
        "split_draw": inputs.split_record,
        "tokenizer": {
            "source": str(cfg.tokenizer) if cfg.tokenizer is not None else "trained on the train split",
            "text_vocab_size": vocabulary.text_vocab_size,
        },
        "visual_vocab_size": vocabulary.visual_vocab_size,
        "joint_vocab_size": vocabulary.size,
        "clip_seconds": inputs.info.clip_seconds,
        "shards": plan["shards"],
        "videos_per_shard": plan["videos_per_shard"],
        "inputs": {
            "manifest": str(Path(manifest).absolute()),
            "tokens": str(Path(tokens_dir).absolute()),
            "transcripts": str(Path(inputs.transcripts_dir).absolute()) if inputs.transcripts_dir is not None else None,
        },
    }
    atomic_write_json(out / SUMMARY_FILE, summary)
    return summary


# ---------------------------------------------------------------------------------------------- inputs of one video
def find_transcript(entry: VideoEntry, transcripts_dir: Path | None) -> Path | None:
    """The manifest's transcript, else ``<video_id>.<ext>`` in ``transcripts_dir``, else None."""
    if entry.transcript is not None:
        return entry.transcript
    if transcripts_dir is not None:
        for ext in TRANSCRIPT_EXTENSIONS:
            candidate = transcripts_dir / f"{entry.video_id}{ext}"
            if candidate.is_file():
                return candidate
    return None


def video_sentences(
    entry: VideoEntry, transcripts_dir: Path | None, failed_asr: dict[str, dict], cfg: CorpusConfig, punctuator=None
) -> list[Cue]:
    """The sentences of one video (empty: no speech); raises :class:`InputError` with the reason."""
    path = find_transcript(entry, transcripts_dir)
    if path is None:
        record = failed_asr.get(entry.video_id)
        if record is not None and record["kind"] != "no_audio":
            raise InputError(f"no transcript: speech recognition failed ({record.get('reason', '')})", "asr_failed")
        return []
    return split_sentences(read_transcript(path), cfg.pause, cfg.max_words, punctuator)


def _over_clips(dropped: dict) -> str:
    cut = dropped.get("over_clips", 0)
    return f", {cut} cut for more than {MAX_SENTENCES_PER_CLIP} sentences per clip over the same clips" if cut else ""


def _stats(counts: Counter) -> dict[str, float]:
    """count, mean, min, median, max of the values tallied in ``counts``."""
    total = sum(counts.values())
    if not total:
        return {"count": 0, "mean": 0.0, "min": 0, "median": 0, "max": 0}
    values = sorted(counts)
    running, median = 0, values[0]
    for value in values:
        running += counts[value]
        if running * 2 >= total:
            median = value
            break
    mean = sum(v * c for v, c in counts.items()) / total
    return {"count": total, "mean": round(mean, 3), "min": values[0], "median": median, "max": values[-1]}
