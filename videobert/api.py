"""A trained model folder as one object: raw video and text in, answers out.

::

    from videobert import VideoBERTPipeline

    pipe = VideoBERTPipeline.from_pretrained("runs/demo/model")        # + s3d_weights=, device=
    hits = pipe.search("now the red circle moves left", top_k=4)      # the model's own test segments
    pipe.filmstrip(hits[0])

Everything comes from the folder (:mod:`videobert.model_folder`): the network and tokenizer, the
visual vocabulary's codebook, and the feature settings its visual words assume. It is the third of
three loaders, each on top of the one before: the network (:meth:`videobert.model.VideoBERT.from_pretrained`),
the model ready for inference (:func:`videobert.inference.load_model`), and this object, which
adds video files (:class:`videobert.video_tokenizer.VideoTokenizer`) and the model's own index.

A video is given as a path (decoded at the recorded fps and size, S3D features in the recorded
precision, then the codebook — the same computation as ``videobert extract`` + ``videobert
tokenize``), as features already extracted (float ``[n_clips, 1024]``), or as visual words (int
``[n_clips]``). S3D is built on first use: from the weights file given as ``s3d_weights`` (its
sha256 must be the one the features were made with), or, for a model trained on randomly
initialised features, from the same seeded initialisation. A video file's features are computed
once for the life of the object (kept by the file's path, size and modification time), so asking
again — another sentence scored, another span, another template — decodes nothing.

``visual_words``, ``score``, ``zero_shot`` and ``embed`` take a time span ``start``, ``end``
(seconds; default: the whole video): the clips that overlap ``[start, end)`` stand for the video,
so a question about a span is answered about that span.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np

from videobert.caption.stage import generate, load_captioner
from videobert.config import read_yaml
from videobert.corpus.align import overlapping_clips
from videobert.embed.features import PAPER_TEMPLATE, embedding_input, mean_clip_features, template_ids, videobert_features
from videobert.errors import ConfigError, InputError
from videobert.features.s3d import RANDOM_INIT
from videobert.forecast.predict import forecast
from videobert.dual import load_dual
from videobert.index.folder import SearchIndex
from videobert.inference import LoadedModel, forward_sequences, load_model
from videobert.manifest import VideoEntry
from videobert.retrieval.display import filmstrip
from videobert.retrieval.generate import text_to_video
from videobert.retrieval.scoring import align_probability, score_matrix
from videobert.retrieval.zeroshot import AttributeSpec, candidate_ids, class_scores, template_input
from videobert.search import Hit, Searcher, model_index, segments_index
from videobert.serve.cards import SearchHits
from videobert.video_tokenizer import VideoTokenizer
from videobert.vocab.stage import exemplar_images

log = logging.getLogger(__name__)

Video = Union[str, Path, np.ndarray, Sequence[int]]


class VideoBERTPipeline:
    """A loaded model folder (module docstring). Build it with :meth:`from_pretrained`."""

    def __init__(self, model_dir: Path, loaded: LoadedModel, videos: VideoTokenizer):
        self.model_dir, self.loaded, self.videos = model_dir, loaded, videos
        self.dual = load_dual(model_dir, loaded)
        self._searchers: dict[str | None, Searcher] = {}
        self._features: dict[tuple, np.ndarray] = {}  # a video file's S3D features, by (path, size, mtime)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, s3d_weights: str | Path | None = None, device: str = "auto",
                        precision: str = "auto", batch_tokens: int = 0, batch_size: int | None = None,
                        workers: int | None = None) -> "VideoBERTPipeline":
        """Load a model folder written by ``videobert pretrain``. ``s3d_weights``: the S3D state dict
        its features were extracted with (checked against ``features.json``); ``batch_size`` and
        ``workers``: clips per S3D call and decoding processes (extract's defaults)."""
        model_dir = Path(model_dir)
        loaded = load_model(model_dir, device, precision, batch_tokens)
        return cls(model_dir, loaded, VideoTokenizer(model_dir, loaded, s3d_weights, batch_size, workers))

    @property
    def codebook(self):
        """The codebook of the model's visual vocabulary (None for a folder without one)."""
        return self.loaded.codebook

    @property
    def settings(self) -> dict | None:
        """The feature settings the model's visual words assume (``features.json``)."""
        return self.videos.settings

    # ------------------------------------------------------------------ videos to visual words
    def iter_visual_words(self, entries: Sequence[VideoEntry], progress=None
                          ) -> Iterator[tuple[VideoEntry, np.ndarray | None, InputError | None]]:
        """(entry, visual words int32 [n_clips] or None, the error that stopped it) for every video
        file, as each finishes (decoding in worker processes beside S3D, as extract does)."""
        return self.videos.iter_words(entries, progress)

    def features(self, video: str | Path) -> np.ndarray:
        """float16 [n_clips, 1024]: the S3D features of a video file, as ``videobert extract`` makes
        them; computed once per file for the life of this object."""
        path = Path(video)
        try:
            stat = path.stat()
            key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        except OSError:
            return self.videos.features(path)  # reports the file as extraction does
        if key not in self._features:
            self._features[key] = self.videos.features(path)
        return self._features[key]

    def visual_words(self, video: Video, start: float | None = None, end: float | None = None) -> np.ndarray:
        """int [n_clips]: the visual word of every clip of ``video`` — a path (decoded and encoded as
        the model's videos were, once per file), features float [n_clips, 1024], or visual words
        (checked) — or of the clips overlapping ``[start, end)`` seconds."""
        if isinstance(video, (str, Path)):
            words = self.videos.words(self.features(video))
        else:
            words = self.videos.words(video)
        if start is None and end is None:
            return words
        return words[self._span(len(words), start, end)]

    def _span(self, n_clips: int, start: float | None, end: float | None) -> slice:
        """The clips of a video of ``n_clips`` that overlap ``[start, end)`` (None: its start, its end)."""
        seconds = self.clip_seconds()
        first, last = 0.0 if start is None else float(start), n_clips * seconds if end is None else float(end)
        if last <= first:
            raise InputError(f"span {first:g}-{last:g} s: end must come after start")
        clips = overlapping_clips(first, last, n_clips, seconds)
        if not len(clips):
            raise InputError(f"no clip of the video's {n_clips} ({n_clips * seconds:.1f} s) overlaps {first:g}-{last:g} s")
        return slice(clips.start, clips.stop)

    # ------------------------------------------------------------------ answers
    def score(self, texts: str | Sequence[str], videos: Video | Sequence[Video], start: float | None = None,
              end: float | None = None) -> np.ndarray:
        """float64 [len(texts), len(videos)]: the alignment probability of every (text, video)
        pair (one text or one video gives a row or column of one); of each video's clips that
        overlap ``[start, end)`` seconds when given. A video file is decoded once per object."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        videos = [videos] if _is_one_video(videos) else list(videos)
        ids = [self._text_ids(text) for text in texts]
        words = [self.visual_words(video, start, end) for video in videos]
        empty = [i for i, w in enumerate(words) if len(w) == 0]
        if empty:
            raise InputError(f"video {empty[0]} has no clip to score")
        return align_probability(score_matrix(self.loaded, ids, words))

    def search(self, query: str, index: str | Path | SearchIndex | Sequence[Video] | None = None, top_k: int = 5,
               two_stage: int | None = None, exhaustive: bool = False) -> list[Hit]:
        """The ``top_k`` segments best matching ``query``: of an INDEX folder (``videobert index``,
        opened once and kept), of videos given as a list (each searched whole), or by default of the
        model's own test segments (``test_index``). Two stages (:mod:`videobert.search`): the dual
        encoder's ``two_stage`` nearest (default: the K chosen on val), re-ranked by the model;
        ``exhaustive``: every segment scored by the model. In Jupyter the hits show as cards: a
        filmstrip and a player at each segment (hits of one video that overlap are one card)."""
        searcher = self._searcher(index)
        hits = searcher.search(query, top_k, two_stage, exhaustive or self.dual is None)
        return SearchHits(hits, searcher.index.video_path)

    def zero_shot(self, video: Video, template: str, candidates: Sequence[str] | dict[str, Sequence[str]],
                  slot: int = 1, start: float | None = None, end: float | None = None) -> dict[str, float]:
        """The probability of each candidate word (or class of words) at the ``slot``-th ``[MASK]``
        of ``template`` followed by the video's visual words — those of the clips overlapping
        ``[start, end)`` seconds when given: the answer is about that span — best first (paper §4.2)."""
        classes = {str(c): [str(c)] for c in candidates} if not isinstance(candidates, dict) else {
            str(k): [v] if isinstance(v, str) else list(v) for k, v in candidates.items()}
        spec = AttributeSpec("zero_shot", template, slot, {k: tuple(v) for k, v in classes.items()})
        masks = template.count("[MASK]")
        if not 1 <= slot <= masks:
            raise ConfigError(f"slot must be 1 … {masks} (the [MASK] of the template to read), got {slot}")
        labels, ids, owners = candidate_ids(self.loaded, spec)
        if not labels:
            raise ConfigError("no candidate is a single WordPiece the model knows")
        sequence, positions = template_input(self.loaded, template, self.visual_words(video, start, end))
        _, logits = forward_sequences(self.loaded, [sequence], [[positions[slot - 1]]])
        scores = class_scores(logits[0], ids, owners, len(labels))[0]
        return dict(sorted(zip(labels, map(float, scores)), key=lambda item: -item[1]))

    def text_to_video(self, text: str, n_words: int = 4) -> tuple[list[int], list[float]]:
        """The visual words a sentence calls up (paper Fig. 6) and each one's probability."""
        return text_to_video(self.loaded, text, n_words)

    def embed(self, video: Video, start: float | None = None, end: float | None = None,
              template: str = PAPER_TEMPLATE, s3d: bool = True) -> np.ndarray:
        """float32 [H (+1024)]: the VideoBERT features of ``video``'s clips overlapping
        ``[start, end)`` (default: all), as ``videobert embed`` computes them — followed by their
        mean S3D feature when ``s3d`` and the video is a path or features."""
        features = None
        if isinstance(video, (str, Path)):
            features = self.features(video) if s3d else None
            words = self.visual_words(video)
        else:
            array = np.asarray(video)
            features = array if array.ndim == 2 and array.dtype.kind == "f" and s3d else None
            words = self.visual_words(video)
        span = len(words) * self.clip_seconds()
        clips = overlapping_clips(0.0 if start is None else float(start), span if end is None else float(end),
                                  len(words), self.clip_seconds())
        if not len(clips):
            raise InputError(f"no clip of the video's {len(words)} overlaps {start}-{end} s")
        sequence = embedding_input(self.loaded, template_ids(self.loaded, template),
                                   np.asarray(words[clips.start : clips.stop], np.int64))
        row = videobert_features(self.loaded, [sequence])[0]
        if s3d:
            if features is None:
                raise InputError("s3d=True needs the video as a file or as features (visual words carry no S3D feature)")
            row = np.concatenate([row, mean_clip_features(features, clips)])
        return row

    def caption(self, video: Video, captioner: str | Path, start: float | None = None, end: float | None = None,
                beam: int | None = None) -> str:
        """A caption of ``video`` (its span ``[start, end)``) by a captioner trained on this model's
        embeddings (``videobert caption train``), with the template and parts it was trained on."""
        model, tokenizer, info = load_captioner(captioner, self.loaded.device)
        row = self.embed(video, start, end, info.get("template", PAPER_TEMPLATE), s3d=info["features"] != "videobert")
        hidden = self.loaded.model.config.hidden_size
        part = {"videobert": row[:hidden], "s3d": row[hidden:], "both": row}[info["features"]]
        if part.size != sum(model.config.part_dims):
            raise InputError(f"{captioner}: the captioner reads {sum(model.config.part_dims)} numbers, this model's "
                             f"embedding gives {part.size}; it was trained on another model's embeddings")
        cfg = read_yaml(Path(captioner) / "config.yaml") if (Path(captioner) / "config.yaml").exists() else {}
        rounded = part[None].astype(np.float16).astype(np.float32)  # as EMB stores the rows it was trained on
        return generate(model, tokenizer, rounded, beam or int(cfg.get("beam", 5)),
                        float(cfg.get("length_penalty", 0.6)))[0]

    def forecast(self, video: Video, n_words: int = 4, text: str | None = None) -> tuple[list[int], list[float]]:
        """The next ``n_words`` visual words after ``video`` (all its clips are the context) and
        each one's probability when chosen, filled left to right."""
        return forecast(self.loaded, self.visual_words(video), n_words, text)

    def exemplars(self, words: Sequence[int]) -> list[np.ndarray | None]:
        """Each visual word's exemplar thumbnail (uint8 [S, S, 3]; None where there is none)."""
        return exemplar_images(self.loaded.vocab.visual_vocab, words)

    def filmstrip(self, hit: Hit, index: str | Path | SearchIndex | None = None, frames: int = 6) -> np.ndarray:
        """``frames`` frames across a hit's span, uint8 [frames, H, W, 3] (its video is the file the
        index was made from)."""
        path = self.open_index(index).video_path(hit.video_id)
        if path is None:
            raise InputError(f"{hit.video_id}: the index names no video file for it")
        return filmstrip(path, hit.start, hit.end, frames)

    # ------------------------------------------------------------------ helpers
    def _text_ids(self, text: str) -> list[int]:
        self.loaded.vocab.warn_unknown(text, "text")
        ids = self.loaded.vocab.encode_text(text)
        if not ids:
            raise ConfigError(f"the text {text!r} has no WordPiece the model knows")
        return ids

    def open_index(self, index: str | Path | SearchIndex | None = None) -> SearchIndex:
        """An index to search: a folder of ``videobert index``, a :class:`SearchIndex`, or by default
        the model's own ``test_index`` — opened once and kept; one made with another model is refused."""
        return self._searcher(index).index

    def _searcher(self, index) -> Searcher:
        if isinstance(index, (list, tuple)):
            segments = []
            for number, video in enumerate(index):
                words = self.visual_words(video)
                name = str(video) if isinstance(video, (str, Path)) else f"video {number}"
                if len(words):
                    segments.append({"video_id": name, "start": 0.0, "end": len(words) * self.clip_seconds(), "text": "",
                                     "video_ids": words})
            paths = {str(v): Path(v) for v in index if isinstance(v, (str, Path))}
            return Searcher(self.loaded, self.dual, segments_index(self.dual, self.loaded, segments, paths))
        if isinstance(index, SearchIndex):
            return Searcher(self.loaded, self.dual, index)
        key = str(Path(index).resolve()) if index is not None else None
        if key not in self._searchers:
            self._searchers[key] = Searcher(self.loaded, self.dual, model_index(self.model_dir, index))
        return self._searchers[key]

    def clip_seconds(self) -> float:
        """Seconds per clip of the model's visual words."""
        return self.videos.clip_seconds()


def _is_one_video(videos) -> bool:
    if isinstance(videos, (str, Path)):
        return True
    if isinstance(videos, np.ndarray):
        return videos.ndim in (1, 2) and videos.dtype.kind != "O"
    return bool(videos) and isinstance(videos[0], (int, np.integer))


__all__ = ["RANDOM_INIT", "VideoBERTPipeline"]
