"""Evaluating and using a trained model (the evaluate stage, and ``videobert retrieve``):
text-video retrieval, alignment accuracy, zero-shot classification, text-to-video.

``metrics`` (ranks and recall, ties never in the model's favour), ``scoring`` (pair scores,
alignment accuracy), ``pairs`` and ``exhaustive`` (ranking whole galleries), ``two_stage`` (search),
``zeroshot`` (masked-template classification), ``generate`` (text-to-video), ``gallery`` (a corpus
as the gallery; searching it), ``display`` (filmstrips and contact sheets), ``stage`` (the eval
folder: ``run`` and :func:`evaluate`). A loaded model and its forward pass are the model layer's
(:mod:`videobert.inference`), handed on here.
"""

from videobert.inference import LoadedModel, load_model
from videobert.retrieval.metrics import chance_metrics, metrics_from_counts, retrieval_metrics, true_match_counts

__all__ = ["LoadedModel", "chance_metrics", "load_model", "metrics_from_counts", "retrieval_metrics", "true_match_counts"]
