"""Caption metrics against small implementations written here from the metrics' definitions (never
by calling pycocoevalcap), METEOR with and without Java, the Python tokenizer against PTB, bad input.

The captions of the hand-computed sets are lowercase without punctuation, so either tokenizer leaves
them as they are and the definitions below work on ``caption.split()``. METEOR's Java start takes
about ten seconds, so it runs once, in a module fixture; every other call passes ``meteor=False``.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import pytest

from videobert.caption import metrics as cm
from videobert.errors import InputError

JAVA, JAVA_REASON = cm.java_status()
needs_java = pytest.mark.skipif(not JAVA, reason=f"needs Java for the toolkit's PTBTokenizer and METEOR: {JAVA_REASON}")

# ------------------------------------------------------------------------- definitions, written here


def ngram_counts(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_definition(refs: dict, hyps: dict, max_n: int) -> float:
    """Corpus BLEU-max_n: per order, clipped matches and candidate n-grams summed over segments;
    geometric mean of the precisions of orders 1..max_n; brevity penalty exp(1 - R/H) when the
    total hypothesis length H is below R, the sum of each segment's closest reference length (the
    shorter on a tie)."""
    matches, guesses = [0] * max_n, [0] * max_n
    hyp_total = ref_total = 0
    for segment, hyp in hyps.items():
        hyp_tokens = hyp.split()
        ref_tokens = [ref.split() for ref in refs[segment]]
        hyp_total += len(hyp_tokens)
        ref_total += min((abs(len(r) - len(hyp_tokens)), len(r)) for r in ref_tokens)[1]
        for n in range(1, max_n + 1):
            counts = ngram_counts(hyp_tokens, n)
            clip = Counter()
            for r in ref_tokens:
                clip |= ngram_counts(r, n)  # | is the element-wise max
            matches[n - 1] += sum(min(count, clip[gram]) for gram, count in counts.items())
            guesses[n - 1] += max(0, len(hyp_tokens) - n + 1)
    if 0 in matches:
        return 0.0
    precision = math.prod(m / g for m, g in zip(matches, guesses)) ** (1 / max_n)
    brevity = 1.0 if hyp_total >= ref_total else math.exp(1 - ref_total / hyp_total)
    return precision * brevity


def lcs_length(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def rouge_l_definition(refs: dict, hyps: dict, beta: float = 1.2) -> float:
    """Mean over segments of the LCS F-measure (beta 1.2) whose precision and recall are each the
    best over the segment's references (the toolkit maximises them separately)."""
    scores = []
    for segment, hyp in hyps.items():
        hyp_tokens = hyp.split()
        lcs = [lcs_length(ref.split(), hyp_tokens) for ref in refs[segment]]
        precision = max((l / len(hyp_tokens) if hyp_tokens else 0.0) for l in lcs)
        recall = max(l / len(ref.split()) for l, ref in zip(lcs, refs[segment]))
        scores.append((1 + beta**2) * precision * recall / (recall + beta**2 * precision)
                      if precision and recall else 0.0)
    return sum(scores) / len(scores)


def cider_d_definition(refs: dict, hyps: dict, sigma: float = 6.0) -> float:
    """CIDEr-D: tf-idf vectors of n-grams (n = 1..4) with idf = log(N) - log(max(1, df)), df
    counted over the N segments' reference sets; per order, the clipped cosine
    sum(min(h, r) r) / (|h| |r|) times exp(-(len_h - len_r)^2 / (2 sigma^2)), averaged over the
    orders and the references, x10, averaged over segments. Lengths are word counts (the toolkit
    counts bigrams, which differs only for an empty caption, whose similarity is 0 anyway)."""
    n_segments = len(hyps)
    df = Counter()
    for segment in hyps:
        df.update({gram for ref in refs[segment] for n in range(1, 5) for gram in ngram_counts(ref.split(), n)})

    def vectors(tokens: list[str]) -> list[dict]:
        return [{gram: count * (math.log(n_segments) - math.log(max(1.0, df[gram])))
                 for gram, count in ngram_counts(tokens, n).items()} for n in range(1, 5)]

    def norm(vector: dict) -> float:
        return math.sqrt(sum(value * value for value in vector.values()))

    scores = []
    for segment, hyp in hyps.items():
        hyp_tokens = hyp.split()
        hyp_vectors = vectors(hyp_tokens)
        total = 0.0
        for ref in refs[segment]:
            ref_tokens = ref.split()
            penalty = math.exp(-((len(hyp_tokens) - len(ref_tokens)) ** 2) / (2 * sigma**2))
            for h, r in zip(hyp_vectors, vectors(ref_tokens)):
                dot = sum(min(value, r.get(gram, 0.0)) * r.get(gram, 0.0) for gram, value in h.items())
                total += (dot / (norm(h) * norm(r)) if norm(h) and norm(r) else 0.0) * penalty / 4
        scores.append(10 * total / len(refs[segment]))
    return sum(scores) / len(scores)


# ---------------------------------------------------------------------------------- small corpora

REFS = {
    "s1": ["a man is slicing a red onion", "someone cuts an onion on a board"],
    "s2": ["the woman stirs the soup in a pot", "a woman is stirring soup"],
    "s3": ["add salt and pepper to the eggs"],
}
PARTIAL = {"s1": "a man is cutting an onion", "s2": "a woman stirs the soup", "s3": "add pepper to the eggs and salt"}
IDENTICAL = {"s1": "someone cuts an onion on a board", "s2": "a woman is stirring soup", "s3": "add salt and pepper to the eggs"}
NO_FOURGRAM = {"s1": "man is slicing onion", "s2": "a woman stirs soup in the pot", "s3": "salt and pepper"}
WITH_EMPTY = {"s1": "a man is cutting an onion", "s2": "", "s3": "add pepper to the eggs and salt"}


def check_against_definitions(result: dict, refs: dict, hyps: dict, bleu_tolerance: float = 1e-6) -> None:
    # The toolkit adds 1e-15 to matches and 1e-9 to counts: a relative difference near 1e-9.
    assert result["bleu3"] == pytest.approx(bleu_definition(refs, hyps, 3), abs=bleu_tolerance)
    assert result["bleu4"] == pytest.approx(bleu_definition(refs, hyps, 4), abs=bleu_tolerance)
    assert result["rouge_l"] == pytest.approx(rouge_l_definition(refs, hyps), abs=1e-6)
    assert result["cider"] == pytest.approx(cider_d_definition(refs, hyps), abs=1e-6)
    assert result["segments"] == len(hyps)


@pytest.mark.parametrize("hyps", [PARTIAL, WITH_EMPTY], ids=["partial", "empty_hypothesis"])
def test_figures_match_the_definitions(hyps, capsys):
    result = cm.caption_metrics(REFS, hyps, meteor=False)
    check_against_definitions(result, REFS, hyps)
    assert 0 < result["bleu4"] < result["bleu3"] < 1 and result["cider"] > 0
    assert result["meteor"] is None and "meteor=False" in result["meteor_note"]
    assert result["tokenizer"] == ("ptb" if JAVA else "python")
    assert capsys.readouterr().out == ""  # the toolkit's prints are captured


def test_identical_captions_score_one():
    result = cm.caption_metrics(REFS, IDENTICAL, meteor=False, per_segment=True)
    check_against_definitions(result, REFS, IDENTICAL)
    assert result["bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert result["bleu3"] == pytest.approx(1.0, abs=1e-6)
    assert result["per_segment"]["s3"]["rouge_l"] == pytest.approx(1.0)


def test_no_fourgram_overlap():
    assert all(not (ngram_counts(h.split(), 4) & sum((ngram_counts(r.split(), 4) for r in REFS[s]), Counter()))
               for s, h in NO_FOURGRAM.items())
    result = cm.caption_metrics(REFS, NO_FOURGRAM, meteor=False)
    # By definition BLEU-4 is 0; the toolkit's 1e-15 smoothing of the zero 4-gram matches leaves
    # (p1 p2 p3 1e-15 / guesses4) ** (1/4) x brevity, a few 1e-5: hence the looser bound.
    assert 0 <= result["bleu4"] < 1e-3
    check_against_definitions(result, REFS, NO_FOURGRAM, bleu_tolerance=1e-3)
    assert result["bleu3"] > 0.01


# ------------------------------------------------------------------------------------------ METEOR

METEOR_REFS = {"perfect": ["a man is slicing a red onion"], "partial": ["the woman stirs the soup in a pot"]}
METEOR_HYPS = {"perfect": "a man is slicing a red onion", "partial": "a woman stirs soup"}


def java_children() -> list[str]:
    """Command lines of this process's child java processes (Linux /proc; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue
    return [line for line in found if "java" in line]


@pytest.fixture(scope="module")
def with_meteor():
    if not JAVA:
        pytest.skip(f"METEOR needs Java: {JAVA_REASON}")
    return cm.caption_metrics(METEOR_REFS, METEOR_HYPS, per_segment=True)


@needs_java
def test_meteor_perfect_beats_partial(with_meteor):
    per = with_meteor["per_segment"]
    assert 0 < per["partial"]["meteor"] < per["perfect"]["meteor"] <= 1
    assert 0 < with_meteor["meteor"] <= 1 and "meteor_note" not in with_meteor
    assert with_meteor["tokenizer"] == "ptb"
    assert java_children() == []  # the METEOR process is gone


def test_without_java_meteor_is_none_and_the_rest_unchanged(monkeypatch, with_meteor):
    monkeypatch.setattr(cm, "java_status", lambda: (False, "java not found on PATH"))
    result = cm.caption_metrics(METEOR_REFS, METEOR_HYPS)
    assert result["meteor"] is None and result["meteor_note"] == "java not found on PATH"
    assert result["tokenizer"] == "python" and result["tokenizer_note"] == "java not found on PATH"
    for key in ("bleu3", "bleu4", "rouge_l", "cider", "segments"):
        assert result[key] == pytest.approx(with_meteor[key], abs=1e-12), key
    assert "not computed (java not found on PATH)" in cm.format_metrics(result)[0]


def test_java_detection_without_java_on_path(monkeypatch):
    cm.java_status.cache_clear()
    monkeypatch.setenv("PATH", "")
    try:
        assert cm.java_status() == (False, "java not found on PATH")
        result = cm.caption_metrics(REFS, PARTIAL)
        assert result["meteor"] is None and result["meteor_note"] == "java not found on PATH"
        assert result["tokenizer"] == "python"
        check_against_definitions(result, REFS, PARTIAL)
    finally:
        cm.java_status.cache_clear()  # the next caller detects the real Java again


@needs_java
def test_meteor_failure_is_a_note_and_leaves_no_process(monkeypatch):
    from pycocoevalcap.meteor import meteor as meteor_module

    monkeypatch.setattr(meteor_module, "METEOR_JAR", "no-such-meteor.jar")
    result = cm.caption_metrics(REFS, PARTIAL)
    assert result["meteor"] is None and "METEOR's java process failed" in result["meteor_note"]
    assert "no-such-meteor.jar" in result["meteor_note"]
    check_against_definitions(result, REFS, PARTIAL)
    assert java_children() == []


# ------------------------------------------------------------------------------------- tokenizers

PUNCTUATED = [
    "A man slices an onion, then adds it to the pan.",
    "The chef's knife isn't sharp; she sharpens it!",
    "Mix the flour (about 2 cups) with 1.5 tsp of salt...",
    'She says "stir it" and they\'re done -- finally.',
    "Cut the 3-inch pieces into 1/2 inch cubes at 10:30 a.m. in the U.S.",
    "Mr. Smith can't cook; he's gonna order 1,000 pizzas?!",
    "\u201cWhisk\u201d the eggs \u2014 don\u2019t stop\u2026 OK: [done] {yes}",
]


@needs_java
def test_python_tokenizer_matches_ptb():
    ptb = cm.ptb_tokenize(PUNCTUATED)
    assert [cm.python_tokenize(caption) for caption in PUNCTUATED] == ptb
    assert ptb[1] == "the chef 's knife is n't sharp she sharpens it"
    assert "-lrb- about 2 cups -rrb-" in ptb[2]  # lowercased brackets escape the toolkit's list


@needs_java
def test_ptb_keeps_captions_aligned():
    # Java takes \r, \f and U+2028 for line breaks; empty captions never reach it.
    captions = ["", "one\rtwo", "three\x0cfour", "five\u2028six", "", "seven.", "..."]
    assert cm.ptb_tokenize(captions) == ["", "one two", "three four", "five six", "", "seven", ""]


def test_python_tokenizer_without_java():
    assert cm.python_tokenize("The chef's knife isn't sharp; (really)!") == "the chef 's knife is n't sharp -lrb- really -rrb-"
    assert cm.python_tokenize("  ") == ""


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("refs", "hyps", "words"), [
    ({"s1": ["a man"], "s2": [""]}, {"s1": "a man", "s2": "x"}, ["'s2'", "reference 0 is empty"]),
    ({"s1": ["a man"]}, {"s1": "a man", "s9": "x"}, ["'s9'", "no references"]),
    ({"s1": ["a man"], "s2": ["a dog"]}, {"s1": "a man"}, ["'s2'", "no hypothesis"]),
    ({"s1": []}, {"s1": "a man"}, ["'s1'", "empty list of references"]),
    ({"s1": "a man"}, {"s1": "a man"}, ["'s1'", "list of strings"]),
    ({"s1": ["a man"]}, {"s1": None}, ["'s1'", "not a string"]),
    ({"s1": ["a man", "..."]}, {"s1": "a man"}, ["'s1'", "reference 1 has no words"]),
    ({}, {}, ["no segments"]),
])
def test_bad_input_names_the_segment(refs, hyps, words):
    with pytest.raises(InputError) as error:
        cm.caption_metrics(refs, hyps, tokenizer="python", meteor=False)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message
