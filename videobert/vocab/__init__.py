"""Visual words (the vocab and tokenize stages): hierarchical k-means over clip features, and every
clip's word.

``normalise`` (feature normalisation), ``kmeans`` (growing and descending the tree), ``codebook``
(normalisation + tree, tokenizing, its file), ``sample`` (the clips it is trained on),
``exemplars`` (the clip nearest each word), ``stage`` (the VOCAB and TOKENS folders).
"""

from videobert.vocab.codebook import Codebook
from videobert.vocab.kmeans import VocabTree, descend, faiss_gpu_wanted, flat_comparison, hierarchical_kmeans, quantisation_mse
from videobert.vocab.normalise import Normalisation, fit_normalisation
from videobert.vocab.stage import TokenizeConfig, VocabConfig, load, load_centroids, load_tokens, run, run_tokenize, tokens_meta

__all__ = [
    "Codebook", "Normalisation", "TokenizeConfig", "VocabConfig", "VocabTree", "descend", "faiss_gpu_wanted",
    "fit_normalisation", "flat_comparison", "hierarchical_kmeans", "load", "load_centroids", "load_tokens",
    "quantisation_mse", "run", "run_tokenize", "tokens_meta",
]
