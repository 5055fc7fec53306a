"""Clip features: S3D activations, one 1024-d vector per 1.5 s clip (the extract stage).

``s3d`` (the backbone and its encoder), ``s3d_init`` (its seeded random initialisation),
``decode`` (ffmpeg decoding in worker processes), ``extract`` (batching clips of many videos
through the encoder), ``stage`` (the FEATURES folder: ``run`` and the readers).
"""

from videobert.features.s3d import FEATURE_DIM, ClipEncoder, build_s3d, load_s3d_state
from videobert.features.stage import (
    ExtractConfig, clip_count, extract_info, feature_path, is_complete, list_videos, load_features, run,
)

__all__ = [
    "FEATURE_DIM", "ClipEncoder", "ExtractConfig", "build_s3d", "clip_count", "extract_info", "feature_path",
    "is_complete", "list_videos", "load_features", "load_s3d_state", "run",
]
