"""VideoBERT features per annotated segment (paper §4.3): the model's states over the segment's
visual words behind a fill-in-the-blank sentence, optionally beside the mean S3D feature."""

from videobert.embed.features import PAPER_TEMPLATE, embedding_input, videobert_features
from videobert.embed.stage import EmbedConfig, load_embeddings, run

__all__ = ["PAPER_TEMPLATE", "EmbedConfig", "embedding_input", "load_embeddings", "run", "videobert_features"]
