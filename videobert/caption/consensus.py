"""Retrieval baselines of captioning: copy a caption from the train segments whose features are
nearest.

* :func:`nearest_neighbour_captions` — the caption of the single nearest train segment (cosine over
  features standardised by the train split's mean and spread).
* :func:`consensus_captions` — the mode-seeking baseline of Devlin et al. (2015, "Language Models
  for Image Captioning: The Quirks and What Works"; Exploring Nearest Neighbor Approaches for Image
  Captioning): among the captions of the ``k`` nearest train segments, the one with the highest mean
  similarity to the other ``k - 1``. Copying one neighbour copies its random phrasing; the consensus
  picks the phrasing (and the content) the neighbourhood agrees on, as a beam-search decoder does.
  The similarity is CIDEr's: the cosine of tf-idf vectors of 1- to 4-grams, averaged over n, the
  document frequencies counted over the train captions (no length penalty, no clipping — it only
  ranks the candidates of one segment).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np

from videobert.caption.metrics import python_tokenize

NGRAMS = 4


def nearest_train_rows(train_features: np.ndarray, features: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """int64 [n, min(k, n_train)]: each row's nearest train rows, most similar first (cosine after
    standardising every column by the train split's mean and spread)."""
    mean, spread = train_features.mean(axis=0), train_features.std(axis=0) + 1e-6

    def unit(x: np.ndarray) -> np.ndarray:
        z = (x - mean) / spread
        return z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)

    bank = unit(train_features)
    k = min(k, len(bank))
    found = []
    for begin in range(0, len(features), chunk):
        similarity = unit(features[begin:begin + chunk]) @ bank.T
        # a stable sort: equal similarities keep the train order (the first is what argmax picks)
        found.append(np.argsort(-similarity, axis=1, kind="stable")[:, :k])
    return np.concatenate(found) if found else np.empty((0, k), np.int64)


def nearest_neighbour_captions(train_features: np.ndarray, train_sentences: Sequence[str],
                               features: np.ndarray) -> list[str]:
    """Each row's caption copied from the train row of highest cosine similarity."""
    return [str(train_sentences[int(row[0])]) for row in nearest_train_rows(train_features, features, 1)]


def _ngrams(words: list[str]) -> list[Counter]:
    return [Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1)) for n in range(1, NGRAMS + 1)]


class _TfIdf:
    """tf-idf n-gram vectors of captions, document frequencies from a caption bank."""

    def __init__(self, bank: Sequence[str]):
        self.grams = [_ngrams(python_tokenize(str(sentence)).split()) for sentence in bank]
        frequency: Counter = Counter()
        for per_n in self.grams:
            for counts in per_n:
                frequency.update(counts.keys())
        self.log_size = math.log(max(len(bank), 1))
        self.frequency = frequency
        self._vectors: dict[int, list[tuple[dict, float]]] = {}

    def vector(self, index: int) -> list[tuple[dict, float]]:
        """Per n, the tf-idf weights of caption ``index`` and their norm."""
        if index not in self._vectors:
            vectors = []
            for counts in self.grams[index]:
                weights = {gram: count * (self.log_size - math.log(max(self.frequency[gram], 1.0)))
                           for gram, count in counts.items()}
                vectors.append((weights, math.sqrt(sum(w * w for w in weights.values()))))
            self._vectors[index] = vectors
        return self._vectors[index]

    def similarity(self, a: int, b: int) -> float:
        total = 0.0
        for (wa, na), (wb, nb) in zip(self.vector(a), self.vector(b)):
            if na > 0 and nb > 0:
                small, large = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
                total += sum(w * large.get(gram, 0.0) for gram, w in small.items()) / (na * nb)
        return total / NGRAMS


def consensus_captions(train_features: np.ndarray, train_sentences: Sequence[str], features: np.ndarray,
                       k: int) -> list[str]:
    """Each row's consensus caption (module docstring): of its ``k`` nearest train segments'
    captions, the one most similar on average to the others (ties: the nearer segment); ``k = 1``
    is the nearest neighbour."""
    if k < 1:
        raise ValueError(f"k: need at least 1, got {k}")
    neighbours = nearest_train_rows(train_features, features, k)
    tfidf = _TfIdf(train_sentences)
    chosen = []
    for row in neighbours:
        candidates = [int(i) for i in row]
        if len(candidates) == 1:
            chosen.append(candidates[0])
            continue
        means = [sum(tfidf.similarity(a, b) for b in candidates if b != a) / (len(candidates) - 1) for a in candidates]
        chosen.append(candidates[int(np.argmax(means))])  # argmax: the first (nearest) of equal means
    return [str(train_sentences[i]) for i in chosen]
