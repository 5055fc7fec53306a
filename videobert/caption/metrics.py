"""COCO caption metrics as captioning papers report them: pycocoevalcap's BLEU-3/4, METEOR, ROUGE-L
and CIDEr-D, with the toolkit's tokenization.

What the figures are (all fractions, as the toolkit returns them; papers print them ×100):

* ``bleu3``, ``bleu4``: corpus-level BLEU from ``Bleu(4)``: clipped n-gram matches and candidate
  n-grams are summed over all segments, the brevity penalty compares the total hypothesis length
  with the sum of each segment's "closest" reference length (ties go to the shorter reference).
  The toolkit adds 1e-15 to matches and 1e-9 to counts, so a corpus without a single 4-gram match
  gets a BLEU-4 of a few 1e-5, not 0.
* ``meteor``: METEOR 1.5 (``Meteor()``, a Java process with ``-Xmx2G``); ``None`` with a
  ``meteor_note`` giving the reason when Java is missing or the process fails — never 0.
* ``rouge_l``: the LCS F-measure with beta = 1.2, precision and recall each the best over a
  segment's references, averaged over segments.
* ``cider``: CIDEr-D (``Cider()``): tf-idf vectors of 1- to 4-grams whose document frequencies come
  from the reference sets *of the segments evaluated*, clipped cosine similarity, a Gaussian length
  penalty (sigma 6), ×10. It depends on the set: a subset's figure is not the full set's, and a
  single segment always scores 0 (every n-gram's idf is log(1/1)).

Tokenization is the toolkit's: the Stanford PTBTokenizer that ships with it (Java; lowercases and
splits punctuation), then the toolkit's PUNCTUATIONS are dropped. Because it lowercases first,
brackets come out as ``-lrb-`` and the like and survive (the list names them in capitals), as they
do in every published figure. Where Java is missing, :func:`python_tokenize` does the same for plain
English captions and the result says ``tokenizer: "python"``, so figures are never mistaken.
The Java tokenizer is run here on the toolkit's jar with the toolkit's flags rather than through
its wrapper, which writes a temporary file beside the jar (fails on a read-only install), lets
stderr through, has no timeout, and pairs output lines with captions by ``zip``: a caption
holding a carriage return or form feed (which Java takes for a line break) would silently shift
every later caption onto the wrong segment. Here all whitespace becomes single spaces first and
the line count is checked.

Empty hypotheses are allowed (a model may say nothing): they add length 0 to BLEU and score 0 on
METEOR, ROUGE-L and CIDEr-D for their segment. Empty references are input errors.

The toolkit prints (``Bleu`` its n-gram totals and length ratio); that is captured and logged at
debug level, never printed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Literal, Mapping, Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer

from videobert.errors import ConfigError, InputError

log = logging.getLogger(__name__)

Tokenizer = Literal["auto", "ptb", "python"]
SCORES = ("bleu3", "bleu4", "meteor", "rouge_l", "cider")
PUNCTUATIONS = frozenset(ptbtokenizer.PUNCTUATIONS)
PTB_JAR = Path(ptbtokenizer.__file__).resolve().parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR
PTB_COMMAND = ("edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase")  # the toolkit's flags


# ---------------------------------------------------------------------------------------------- Java


@functools.cache
def java_status() -> tuple[bool, str]:
    """Whether ``java`` runs (checked once per process): ``(True, "openjdk version ...")`` or
    ``(False, reason)``, e.g. ``(False, "java not found on PATH")``."""
    java = shutil.which("java")
    if java is None:
        return False, "java not found on PATH"
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"{java} -version failed: {error}"
    text = (done.stderr or done.stdout).strip().splitlines()
    first = text[0] if text else ""
    if done.returncode != 0:
        return False, f"{java} -version exited with {done.returncode}: {first}"
    return True, first or java


# -------------------------------------------------------------------------------------- tokenization


def _one_line(caption: str) -> str:
    """All whitespace (line breaks, tabs, form feeds, U+2028 ...) as single spaces."""
    return " ".join(caption.split())


def ptb_tokenize(captions: Sequence[str], timeout_s: float = 600.0) -> list[str]:
    """The toolkit's tokenization: Stanford PTBTokenizer (``-preserveLines -lowerCase``, one Java
    run for all captions), then the toolkit's PUNCTUATIONS dropped. Tokens joined by single spaces,
    one string per caption. Raises RuntimeError when Java fails or answers with a wrong line count."""
    lines = [_one_line(caption) for caption in captions]
    tokenized = [""] * len(lines)
    sent = [i for i, line in enumerate(lines) if line]  # empty captions stay empty without a trip to Java
    if not sent:
        return tokenized
    command = ["java", "-cp", str(PTB_JAR), *PTB_COMMAND]
    try:
        done = subprocess.run(command, input="".join(lines[i] + "\n" for i in sent), capture_output=True,
                              encoding="utf-8", errors="replace", timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RuntimeError(f"PTBTokenizer could not run: {error}") from error
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise RuntimeError(f"PTBTokenizer exited with {done.returncode}: {last}")
    log.debug("PTBTokenizer: %s", done.stderr.strip())
    out = done.stdout.split("\n")
    if out and out[-1] == "":
        out.pop()
    if len(out) != len(sent):
        raise RuntimeError(f"PTBTokenizer returned {len(out)} lines for {len(sent)} captions")
    for i, line in zip(sent, out):
        tokenized[i] = " ".join(token for token in line.split() if token not in PUNCTUATIONS)
    return tokenized


# What PTBTokenizer normalises before tokenizing (curly quotes, dashes, ellipsis, currencies).
_NORMALISE = str.maketrans({
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2018": "'", "\u2019": "'", "\u201a": "'",
    "\u2013": "--", "\u2014": "--", "\u2015": "--", "\u2026": "...",
    "\u00a3": "#", "\u20ac": "$",
})
_TOKEN = re.compile(r"""
      '(?:em|n'|\d0s)(?![\w'])               # 'em, rock 'n' roll, the '90s
    | (?:mr|mrs|ms|dr|st|jr|sr|prof|vs|etc|inc|co|ltd|corp|ph\.d|jan|feb|aug|sept|oct|nov|dec)\.(?!\w)
    | [^\W\d_](?:\.[^\W\d_])*\.(?!\w)        # u.s., a.m., e.g., initials and lone letters: "i."
    | \d+(?:[.,:]\d+)+                       # 3.14, 1,000,000, 10:30
    | \.\d+                                  # .5
    | \w+(?:[-./'&]\w+)*                     # words: well-known, and/or, don't, hello.world
    | \.{3,}                                 # ... (PTB writes any run of three or more as ...)
    | -{2,}                                  # -- (likewise)
    | [?!]+                                  # ?! and !!! stay one token, which the toolkit keeps
    | [^\w\s]                                # any other symbol on its own
""", re.VERBOSE | re.IGNORECASE)
_CLITIC = re.compile(r"^(.+?)(n't|'s|'m|'d|'re|'ve|'ll)$")
_SPLIT_WORDS = {"cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"),
                "wanna": ("wan", "na"), "gimme": ("gim", "me"), "lemme": ("lem", "me")}
_SYMBOLS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-", '"': "''"}


def python_tokenize(caption: str) -> str:
    """Pure-Python stand-in for :func:`ptb_tokenize` on one caption, for machines without Java:
    lowercase, split off punctuation and clitics as PTBTokenizer 3.4.1 does (``don't`` -> ``do n't``,
    ``(`` -> ``-lrb-``, ``1,000`` and ``u.s.`` kept whole), then drop the toolkit's PUNCTUATIONS.
    It matches PTBTokenizer on ordinary English captions, not on every corner of its grammar:
    ``@home``, ``<b>``, ``2+2``, ``y'all`` and ``'tis`` come out differently, and its list of
    abbreviations that keep their full stop is a short one."""
    text = _one_line(caption.translate(_NORMALISE))
    tokens: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group().lower()
        if token[0] in ".-" and len(token) > 2 and len(set(token)) == 1:
            token = token[:3] if token[0] == "." else "--"  # any run of dots is "...", of dashes "--"
        token = _SYMBOLS.get(token, token)
        clitic = _CLITIC.match(token) if token[0].isalnum() else None
        if token in _SPLIT_WORDS:
            tokens.extend(_SPLIT_WORDS[token])
        elif clitic:
            tokens.extend(clitic.groups())
        else:
            tokens.append(token)
    return " ".join(token for token in tokens if token not in PUNCTUATIONS)


def _tokenize_all(captions: list[str], tokenizer: Tokenizer) -> tuple[list[str], str, str | None]:
    """Tokenized captions, the tokenizer used (``ptb`` or ``python``) and why it is not PTB, if not."""
    if tokenizer not in ("auto", "ptb", "python"):
        raise ConfigError(f"tokenizer must be 'auto', 'ptb' or 'python', not {tokenizer!r}")
    if tokenizer == "python":
        return [python_tokenize(caption) for caption in captions], "python", "the python tokenizer was asked for"
    available, reason = java_status()
    if available:
        try:
            return ptb_tokenize(captions), "ptb", None
        except RuntimeError as error:
            if tokenizer == "ptb":
                raise
            reason = str(error)
    elif tokenizer == "ptb":
        raise ConfigError(f"the PTB tokenizer needs Java: {reason}")
    log.warning("caption metrics: tokenizing in Python, not with PTBTokenizer (%s); "
                "figures are close to, not the same as, published ones", reason)
    return [python_tokenize(caption) for caption in captions], "python", reason


# ------------------------------------------------------------------------------------------- METEOR


class _Meteor(Meteor):
    """The toolkit's METEOR scorer with a :meth:`close` that always ends its Java process.

    The toolkit's own ``__del__`` takes the scorer's lock first: when ``compute_score`` has failed
    half-way (Java died, so a read came back empty) the lock is still held and ``__del__`` would
    block the garbage collector for ever; and when ``__init__`` failed it raises AttributeError."""

    def __init__(self):
        self.meteor_p = None
        super().__init__()

    def close(self) -> str:
        """Kill the Java process, close its pipes; returns the last line it wrote to stderr."""
        process, self.meteor_p = self.meteor_p, None
        if process is None:
            return ""
        with contextlib.suppress(OSError):  # a broken pipe when Java is already gone
            process.stdin.close()
        process.kill()
        process.wait()
        if self.lock.locked():
            self.lock.release()
        stderr = process.stderr.read().decode(errors="replace").strip()
        process.stdout.close()
        process.stderr.close()
        return (stderr.splitlines() or [""])[-1]

    def __del__(self):
        self.close()


def _meteor(jobs: Sequence[tuple[dict, dict]], timeout_s: float) -> list[tuple[float | None, list[float] | None, str | None]]:
    """Corpus and per-segment METEOR of each (references, hypotheses) pair of tokenized captions,
    one Java process for them all (its start is the slow part), or ``(None, None, reason)`` each."""
    available, reason = java_status()
    if not available:
        return [(None, None, reason)] * len(jobs)
    try:
        scorer = _Meteor()
    except OSError as error:
        return [(None, None, f"METEOR could not start java: {error}")] * len(jobs)
    outcome: dict = {"scores": []}

    def score() -> None:
        try:
            for gts, res in jobs:
                outcome["scores"].append(scorer.compute_score(gts, res))
        except BaseException as error:  # handed to the calling thread below
            outcome["error"] = error

    worker = threading.Thread(target=score, name="meteor", daemon=True)
    worker.start()
    worker.join(timeout_s)
    timed_out = worker.is_alive()
    # Killing Java ends any read the worker is blocked in; join it before its pipes are closed.
    scorer.meteor_p.kill()
    worker.join(30)
    stderr = scorer.close()
    if timed_out:
        return [(None, None, f"METEOR gave no answer within {timeout_s:g} s")] * len(jobs)
    error = outcome.get("error")
    if error is not None:
        if not isinstance(error, (OSError, ValueError)):
            raise error
        detail = f": {stderr}" if stderr else ""
        return [(None, None, f"METEOR's java process failed ({type(error).__name__}){detail}")] * len(jobs)
    return [(float(corpus), [float(value) for value in segments], None) for corpus, segments in outcome["scores"]]


# ------------------------------------------------------------------------------------------ metrics


def _check(references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str]) -> list[str]:
    """Segment ids in the references' order, or InputError naming the first bad segment."""
    if not isinstance(references, Mapping) or not isinstance(hypotheses, Mapping):
        raise InputError("caption metrics take two mappings: segment id -> references, segment id -> hypothesis")
    if not references and not hypotheses:
        raise InputError("caption metrics: no segments to score")
    for segment in hypotheses:
        if segment not in references:
            raise InputError(f"segment {segment!r} has a hypothesis but no references")
    for segment, refs in references.items():
        if segment not in hypotheses:
            raise InputError(f"segment {segment!r} has references but no hypothesis")
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise InputError(f"segment {segment!r}: references must be a list of strings, not a {type(refs).__name__}")
        if not refs:
            raise InputError(f"segment {segment!r} has an empty list of references")
        for i, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise InputError(f"segment {segment!r}: reference {i} is a {type(ref).__name__}, not a string")
            if not ref.strip():
                raise InputError(f"segment {segment!r}: reference {i} is empty")
        if not isinstance(hypotheses[segment], str):
            raise InputError(f"segment {segment!r}: the hypothesis is a {type(hypotheses[segment]).__name__}, not a string")
    return list(references)


def caption_metrics(references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str], *,
                    tokenizer: Tokenizer = "auto", meteor: bool = True, per_segment: bool = False,
                    meteor_timeout_s: float = 600.0) -> dict:
    """BLEU-3/4, METEOR, ROUGE-L and CIDEr-D of one hypothesis per segment against its references
    (module docstring for what each figure is).

    Returns ``bleu3``, ``bleu4``, ``meteor`` (None when not computed, then ``meteor_note`` says
    why), ``rouge_l``, ``cider``, ``segments`` and ``tokenizer`` (``"ptb"``, or ``"python"`` with a
    ``tokenizer_note``). ``tokenizer="auto"`` uses PTB where Java runs; ``"ptb"`` insists on it
    (ConfigError without Java); ``"python"`` always uses :func:`python_tokenize`. ``meteor=False``
    skips METEOR (its Java start takes seconds to tens of seconds, mostly loading its paraphrase
    table): ``meteor`` is then None with the note saying so. With
    ``per_segment``, ``per_segment`` maps each id to its own five scores (BLEU per sentence, with
    the toolkit's smoothing). InputError for ids on one side only, empty references or non-strings."""
    return caption_metrics_sets(references, {"": hypotheses}, tokenizer=tokenizer, meteor=meteor,
                                per_segment=per_segment, meteor_timeout_s=meteor_timeout_s)[""]


def caption_metrics_sets(references: Mapping[str, Sequence[str]], hypothesis_sets: Mapping[str, Mapping[str, str]], *,
                         tokenizer: Tokenizer = "auto", meteor: bool = True, per_segment: bool = False,
                         meteor_timeout_s: float = 600.0) -> dict[str, dict]:
    """:func:`caption_metrics` of several sets of hypotheses (e.g. a model and its baselines)
    against the same references, by name — one tokenizer run and one METEOR process for all."""
    names = list(hypothesis_sets)
    segments = _check(references, hypothesis_sets[names[0]]) if names else []
    for name in names[1:]:
        _check(references, hypothesis_sets[name])
    captions = [ref for segment in segments for ref in references[segment]]
    for name in names:
        captions += [hypothesis_sets[name][segment] for segment in segments]
    tokenized, used, note = _tokenize_all(captions, tokenizer)
    gts: dict[str, list[str]] = {}
    position = 0
    for segment in segments:
        count = len(references[segment])
        gts[segment] = tokenized[position:position + count]
        position += count
        for i, ref in enumerate(gts[segment]):
            if not ref:
                raise InputError(f"segment {segment!r}: reference {i} has no words after tokenization "
                                 f"({references[segment][i]!r})")
    sets = {}
    for name in names:
        sets[name] = {segment: [tokenized[position + i]] for i, segment in enumerate(segments)}
        position += len(segments)
    if meteor:
        meteor_results = _meteor([(gts, sets[name]) for name in names], meteor_timeout_s)
    else:
        meteor_results = [(None, None, "not asked for (meteor=False)")] * len(names)
    results = {}
    for name, (meteor_corpus, meteor_segments, meteor_note) in zip(names, meteor_results):
        res = sets[name]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            bleu, bleu_segments = Bleu(4).compute_score(gts, res)
            rouge, rouge_segments = Rouge().compute_score(gts, res)
            cider, cider_segments = Cider().compute_score(gts, res)
        if printed.getvalue():
            log.debug("pycocoevalcap printed: %s", printed.getvalue().strip().replace("\n", " | "))
        metrics: dict = {"bleu3": float(bleu[2]), "bleu4": float(bleu[3]), "meteor": meteor_corpus,
                         "rouge_l": float(rouge), "cider": float(cider), "segments": len(segments), "tokenizer": used}
        if meteor_corpus is None:
            metrics["meteor_note"] = meteor_note
            log.info("caption metrics: METEOR not computed: %s", meteor_note)
        if note is not None:
            metrics["tokenizer_note"] = note
        if per_segment:
            metrics["per_segment"] = {
                segment: {"bleu3": float(bleu_segments[2][i]), "bleu4": float(bleu_segments[3][i]),
                          "meteor": None if meteor_segments is None else meteor_segments[i],
                          "rouge_l": float(rouge_segments[i]), "cider": float(cider_segments[i])}
                for i, segment in enumerate(segments)}
        results[name] = metrics
    return results


def format_metrics(metrics: dict) -> list[str]:
    """Short lines for people: the five figures, then how they were obtained."""
    meteor = metrics.get("meteor")
    meteor_text = f"{meteor:.4f}" if meteor is not None else f"not computed ({metrics.get('meteor_note', 'unknown reason')})"
    lines = [f"BLEU-3 {metrics['bleu3']:.4f}  BLEU-4 {metrics['bleu4']:.4f}  METEOR {meteor_text}  "
             f"ROUGE-L {metrics['rouge_l']:.4f}  CIDEr {metrics['cider']:.4f}"]
    tokenizer = metrics.get("tokenizer", "ptb")
    source = ("pycocoevalcap with its PTB tokenizer" if tokenizer == "ptb" else
              f"pycocoevalcap scorers, tokenized in Python ({metrics.get('tokenizer_note', '')}): close to, "
              "not the same as, published figures")
    lines.append(f"{metrics.get('segments', '?')} segments; {source}")
    return lines
