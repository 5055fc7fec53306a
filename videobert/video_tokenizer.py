"""Video files to a trained model's visual words, exactly as its own videos were made into them.

A model folder records the feature settings its visual words assume (``features.json``: backbone,
S3D weights sha256, fps, clip frames, size, precision) and carries the codebook
(``visual_vocab/``). :class:`VideoTokenizer` decodes a video at the recorded fps and size, runs S3D
in the recorded precision and descends the codebook — the same computation as ``videobert
extract`` + ``videobert tokenize``. The precision is kept on any device because it changes words:
fp32 and bf16 features give 1.6 % of the demo's clips another visual word (BENCHMARKS.md). S3D is built on first use: from the weights file given as
``s3d_weights`` (its sha256 must be the one the features were made with), or, for a model trained
on randomly initialised features, from the same seeded initialisation.

``videobert index`` and :class:`videobert.VideoBERTPipeline` both read videos through it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from videobert.errors import InputError
from videobert.features.decode import check_decoder, decoder_for_device
from videobert.features.extract import VideoFeatures, extract_features, resolve_runtime
from videobert.features.s3d import FEATURE_DIM, ClipEncoder, build_s3d
from videobert.features.settings import clip_seconds
from videobert.inference import LoadedModel
from videobert.manifest import VideoEntry, safe_id_from_stem
from videobert.model_folder import FEATURES_FILE, check_s3d_weights, read_feature_settings
from videobert.runtime import cpu_bf16_native, resolve_precision

log = logging.getLogger(__name__)


class VideoTokenizer:
    """The visual words of video files, features or word arrays for the model ``loaded`` of
    ``model_dir`` (module docstring). ``batch_size`` and ``workers``: clips per S3D call and
    decoding processes (extract's defaults)."""

    def __init__(self, model_dir: str | Path, loaded: LoadedModel, s3d_weights: str | Path | None = None,
                 batch_size: int | None = None, workers: int | None = None):
        self.model_dir, self.loaded = Path(model_dir), loaded
        self.settings: dict[str, Any] | None = read_feature_settings(self.model_dir)
        self.s3d_weights = Path(s3d_weights).expanduser() if s3d_weights is not None else None
        if self.s3d_weights is not None:
            if self.settings is None:
                raise InputError(f"{self.model_dir}: records no feature settings ({FEATURES_FILE}), so no S3D weights "
                                 "can be checked")
            check_s3d_weights(self.model_dir, self.settings, self.s3d_weights)
        self.batch_size, self.workers = batch_size, workers
        self._encoder: ClipEncoder | None = None
        self._decoder_checked = False

    @property
    def codebook(self):
        return self.loaded.codebook

    @property
    def reads_videos(self) -> bool:
        """Whether the model folder holds what decoding videos needs (a codebook and feature settings)."""
        return self.codebook is not None and self.settings is not None

    def clip_seconds(self) -> float:
        """Seconds per clip of the model's visual words."""
        seconds = clip_seconds(self.settings or {})
        if seconds is None:
            raise InputError(f"{self.model_dir / FEATURES_FILE}: records no clip length (clip_seconds, or fps and "
                             "clip_frames); the times of the model's visual words are unknown")
        return seconds

    # ------------------------------------------------------------------ video files
    def _s3d(self) -> ClipEncoder:
        if self._encoder is None:
            if not self.reads_videos:
                raise InputError(f"{self.model_dir}: holds no visual vocabulary and feature settings (visual_vocab/, "
                                 f"{FEATURES_FILE}); give visual words or features instead of video files")
            check_s3d_weights(self.model_dir, self.settings, self.s3d_weights)
            for key in ("fps", "clip_frames", "size"):
                if key not in self.settings:
                    raise InputError(f"{self.model_dir / FEATURES_FILE}: lacks {key!r}, so videos cannot be decoded as "
                                     "the model's were")
            model, made_from = build_s3d(self.s3d_weights, int(self.settings.get("init_seed", 0)))
            expected = self.settings.get("weights")
            if expected is not None and made_from != expected:
                raise InputError(f"{self.model_dir / FEATURES_FILE}: features of {expected}, but S3D was built from "
                                 f"{made_from}")
            device = self.loaded.device
            precision = resolve_precision(self.settings.get("precision", "auto"), device)
            if device.type == "cpu" and precision == "bf16" and not cpu_bf16_native():
                log.warning("%s: the model's visual words were made from bf16 S3D features, and this CPU has no native "
                            "bf16 (AVX-512 BF16 or AMX): S3D runs emulated, many times slower than fp32. The precision "
                            "is kept because fp32 features change the visual word of some clips (1.6 %% of the "
                            "demo's, BENCHMARKS.md)", self.model_dir)
            self._encoder = ClipEncoder(model, device, precision)
        return self._encoder

    def iter_features(self, entries: Sequence[VideoEntry], progress=None) -> Iterator[VideoFeatures]:
        """Each video's S3D features (float16 [n_clips, 1024]) or the error that stopped it, as each
        finishes (decoding in worker processes beside S3D, as extract does; on the GPU with the
        decoder the features were extracted with, checked once)."""
        encoder = self._s3d()
        settings = self.settings
        runtime = resolve_runtime(encoder.device, encoder.precision, self.batch_size, self.workers)
        decoder = decoder_for_device(settings.get("decoder", "cpu"), encoder.device)
        if not self._decoder_checked:
            check_decoder(decoder, encoder.device, runtime.gpu)
            self._decoder_checked = True
        yield from extract_features(list(entries), encoder, runtime, int(settings["fps"]), int(settings["clip_frames"]),
                                    int(settings["size"]), decoder, progress=progress, desc="visual words")

    def iter_words(self, entries: Sequence[VideoEntry], progress=None
                   ) -> Iterator[tuple[VideoEntry, np.ndarray | None, InputError | None]]:
        """(entry, visual words int32 [n_clips] or None, the error that stopped it) for every video
        file, as each finishes."""
        for video in self.iter_features(entries, progress):
            if video.error is not None:
                yield video.entry, None, video.error
            else:
                yield video.entry, self.codebook.tokenize(video.features), None

    def features(self, video: str | Path) -> np.ndarray:
        """float16 [n_clips, 1024]: the S3D features of a video file, as ``videobert extract`` makes them."""
        for result in self.iter_features([video_entry(video)]):
            if result.error is not None:
                raise result.error
            return result.features
        raise InputError(f"{video}: no features")

    # ------------------------------------------------------------------ any form of video
    def words(self, video: str | Path | np.ndarray | Sequence[int]) -> np.ndarray:
        """int [n_clips]: the visual word of every clip of ``video`` — a path (decoded and encoded as
        the model's videos were), features float [n_clips, 1024], or visual words (checked)."""
        if isinstance(video, (str, Path)):
            (_, words, error), = self.iter_words([video_entry(video)])
            if error is not None:
                raise error
            return words
        array = np.asarray(video)
        size = self.loaded.layout.visual_vocab_size
        if array.ndim == 2 and array.dtype.kind == "f":
            if array.shape[1] != FEATURE_DIM:
                raise InputError(f"features of shape {list(array.shape)}: expected [n_clips, {FEATURE_DIM}]")
            if self.codebook is None:
                raise InputError(f"{self.model_dir}: holds no visual vocabulary (visual_vocab/) to tokenize features with")
            if not np.isfinite(array).all():
                raise InputError("features contain NaN or infinity", "non_finite")
            return self.codebook.tokenize(array)
        if array.ndim == 1 and (array.dtype.kind in "iu" or array.size == 0):
            if array.size and (array.min() < 0 or array.max() >= size):
                raise InputError(f"visual words fall outside 0 … {size - 1}")
            return array.astype(np.int64)
        raise InputError(f"a video is a file path, features [n_clips, {FEATURE_DIM}] or visual words [n_clips]; "
                         f"got an array of shape {list(array.shape)} ({array.dtype})")


def video_entry(video: str | Path) -> VideoEntry:
    """A video file as a manifest entry, its id from the file name."""
    path = Path(video).expanduser()
    return VideoEntry(safe_id_from_stem(path.stem), path)
