"""``videobert serve``: search a model's indexes in a browser and watch the moment that matched.

An ASGI app (Starlette) over one model folder and its indexes, opened once (:class:`SearchService`):

=========================================  =====================================================
``GET /``                                  the page: a search box, the hit cards, their players
``GET /api/indexes``                       the indexes served: number, name, segments, videos
``GET /api/search?q=…&index=0&top_k=5&k=``  the hits (as ``videobert retrieve`` finds them), the
                                           cards they merge into (with their HTML), and the
                                           visual words the query calls up, and its words
                                           the vocabulary does not hold whole
``GET /api/filmstrip/{index}/{row}.jpg``   frames across segment ``row`` (decoded on demand, cached)
``GET /api/video/{index}/{number}``        video ``number`` of an index's files (HTTP Range: 206)
``GET /api/exemplar/{word}.jpg``           a visual word's exemplar thumbnail
=========================================  =====================================================

Safe by default: it binds to loopback unless told otherwise; it serves only the files an index
records, addressed by number, never a path from the request; a query that is empty, longer than
:data:`MAX_QUERY` characters or holds control characters gets a 400 with a one-line reason; at most
``concurrent`` searches run at once and ``queue`` wait, and one more gets a 503 saying so (a burst
cannot take the machine's memory); a video that is missing or moved shows as such on its card.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
import unicodedata
from collections import OrderedDict
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from videobert.dual import load_dual
from videobert.errors import ConfigError, InputError, VideoBertError
from videobert.index.folder import SearchIndex
from videobert.inference import load_model
from videobert.media import frames_across
from videobert.retrieval.generate import text_to_video
from videobert.search import Searcher, model_index
from videobert.serve.cards import CARD_CSS, Card, card_html, jpeg_data, merge_hits, strip_image
from videobert.vocab.stage import exemplar_path

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PAGE_FILES = {"page.js": "text/javascript", "page.css": "text/css"}
MAX_QUERY = 500  # characters of a query
MAX_TOP_K, MAX_K, MAX_FRAMES = 50, 1000, 12
CACHE_STRIPS = 512  # filmstrips kept in memory (JPEG bytes)


class Refused(Exception):
    """A request the server answers with ``status`` and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def check_query(query: str | None) -> str:
    """The query, or :class:`Refused` (400) naming what is wrong with it."""
    if query is None or not query.strip():
        raise Refused(400, "the query is empty")
    if len(query) > MAX_QUERY:
        raise Refused(400, f"the query is {len(query)} characters long, more than the {MAX_QUERY} allowed")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in query):
        raise Refused(400, "the query holds control characters")
    return query.strip()


def _int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise Refused(400, f"{name} must be a whole number, got {text[:40]!r}") from None
    if not low <= value <= high:
        raise Refused(400, f"{name} must be {low} … {high}, got {value}")
    return value


class SearchService:
    """A model folder and its indexes opened once, for many requests (module docstring)."""

    def __init__(self, model_dir: str | Path, indexes: list[str | Path] | None = None, device: str = "auto"):
        self.model_dir = Path(model_dir)
        self.loaded = load_model(self.model_dir, device)
        self.dual = load_dual(self.model_dir, self.loaded)
        if self.dual is None:
            log.warning("%s has no dual encoder (videobert distil): every segment is scored by the cross-encoder",
                        self.model_dir)
        opened = [model_index(self.model_dir)] if not indexes else [model_index(self.model_dir, i) for i in indexes]
        self.searchers = [Searcher(self.loaded, self.dual, index) for index in opened]
        self.names = [index.folder.name if index.folder is not None else f"index {n}" for n, index in enumerate(opened)]
        self.videos = [list(index.video_paths().items()) for index in opened]  # (video_id, path) by number
        self.numbers = [{video_id: n for n, (video_id, _) in enumerate(videos)} for videos in self.videos]
        self.vocab_dir = self.loaded.vocab.visual_vocab
        self._strips: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()  # one search at a time through the model (the app bounds how many wait)

    def index(self, number: int) -> SearchIndex:
        if not 0 <= number < len(self.searchers):
            raise Refused(404, f"no index {number} (this server has {len(self.searchers)})")
        return self.searchers[number].index

    def describe(self) -> list[dict[str, Any]]:
        return [{"number": n, "name": name, "segments": s.index.live_rows, "videos": len(self.videos[n]),
                 "k": s.default_k} for n, (name, s) in enumerate(zip(self.names, self.searchers))]

    # ------------------------------------------------------------------ answers
    def search(self, query: str, index: int = 0, top_k: int = 5, k: int | None = None) -> dict[str, Any]:
        """The hits of ``query`` (as ``videobert retrieve``), their cards and the query's visual words."""
        self.index(index)
        searcher = self.searchers[index]
        with self._lock:
            try:
                hits = searcher.search(query, top_k, k)
                words, probabilities = text_to_video(self.loaded, query, 4)
            except ConfigError as exc:
                raise Refused(400, str(exc).splitlines()[0]) from None
            timings = dict(searcher.timings)
        cards = merge_hits(hits)
        wanted = set(int(w) for w in words)
        exemplars = {int(w): f"/api/exemplar/{int(w)}.jpg" for w in words if self.exemplar(int(w)) is not None}
        out_cards = []
        for card in cards:
            held = set()
            for row in card.rows:
                held.update(int(w) for w in searcher.index.words(row))
            card.words = [int(w) for w in words if int(w) in held and int(w) in wanted]
            video, missing = self.video_url(index, card.video_id)
            strip = f"/api/filmstrip/{index}/{card.rows[0]}.jpg?start={card.start:.3f}&end={card.end:.3f}" if video else None
            out_cards.append({**card.to_json(), "video_url": video, "missing": missing,
                              "html": card_html(card, strip, video, exemplars, missing)})
        called: dict[int, float] = {}  # the words the query calls up, each once with its best probability
        for w, p in zip(words, probabilities):
            called[int(w)] = max(called.get(int(w), 0.0), float(p))
        unknown, count = self.loaded.vocab.unknown_words(query)
        return {"query": query, "index": index, "hits": [hit_json(h) for h in hits], "cards": out_cards,
                "unknown_words": unknown, "word_count": count,
                "words": [{"word": w, "probability": p, "exemplar": exemplars.get(w)} for w, p in called.items()],
                "timings_ms": {name: round(seconds * 1000, 2) for name, seconds in timings.items()}}

    def video_path(self, index: int, number: int) -> Path:
        """The file of video ``number`` of index ``index`` (only files the index records); 404 when
        there is no such video or its file is missing or not a regular file."""
        self.index(index)
        videos = self.videos[index]
        if not 0 <= number < len(videos):
            raise Refused(404, f"no video {number} in index {index}")
        path = Path(videos[number][1])
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise Refused(404, f"video {number} of index {index} is not a regular file")
        except OSError:
            raise Refused(404, f"video {number} of index {index} is missing (moved or deleted)") from None
        return path

    def video_url(self, index: int, video_id: str) -> tuple[str | None, str | None]:
        """(the URL of a video's file, None) or (None, why it cannot be played)."""
        number = self.numbers[index].get(video_id)
        if number is None:
            return None, "the index names no file for it"
        try:
            self.video_path(index, number)
        except Refused as exc:
            return None, str(exc)
        return f"/api/video/{index}/{number}", None

    def filmstrip(self, index: int, row: int, start: float, end: float, frames: int = 6) -> bytes:
        """JPEG bytes: ``frames`` frames across ``[start, end)`` of the video of segment ``row``
        (decoded on demand, kept in a bounded cache)."""
        searched = self.index(index)
        if not 0 <= row < searched.rows or row in set(searched.removed.tolist()):
            raise Refused(404, f"no segment {row} in index {index}")
        segment = searched.segment(row)
        # the span asked for must lie within the segment's video, as the cards ask for
        start, end = max(0.0, min(start, end)), max(start, end)
        key = (index, segment["video_id"], round(start, 2), round(end, 2), frames)
        with self._lock:
            if key in self._strips:
                self._strips.move_to_end(key)
                return self._strips[key]
        number = self.numbers[index].get(segment["video_id"])
        if number is None:
            raise Refused(404, f"index {index} names no file for video {segment['video_id']}")
        path = self.video_path(index, number)
        try:
            data = jpeg_data(strip_image(frames_across(path, start, end, frames)))
        except InputError as exc:
            raise Refused(404, str(exc).splitlines()[0]) from None
        with self._lock:
            self._strips[key] = data
            while len(self._strips) > CACHE_STRIPS:
                self._strips.popitem(last=False)
        return data

    def exemplar(self, word: int) -> Path | None:
        if self.vocab_dir is None or not 0 <= word < self.loaded.layout.visual_vocab_size:
            return None
        path = exemplar_path(self.vocab_dir, word)
        try:
            return path if stat.S_ISREG(os.stat(path).st_mode) else None
        except OSError:
            return None


def hit_json(hit) -> dict[str, Any]:
    return {"rank": hit.rank, "video_id": hit.video_id, "start": hit.start, "end": hit.end, "score": hit.score,
            "first_stage": hit.first_stage, "sentence": hit.text, "row": hit.row}


def create_app(service: SearchService, concurrent: int = 1, queue: int = 16) -> Starlette:
    """The ASGI app over ``service``: at most ``concurrent`` searches at once, ``queue`` waiting."""
    slots = asyncio.Semaphore(concurrent)
    waiting = {"searches": 0}

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "page.html", media_type="text/html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "cards.css":  # the cards' style, shared with Jupyter's
            return Response(CARD_CSS, media_type="text/css")
        if name not in PAGE_FILES:
            raise Refused(404, f"no file {name[:60]!r}")
        return FileResponse(STATIC / name, media_type=PAGE_FILES[name])

    async def indexes(request: Request) -> Response:
        return JSONResponse(service.describe())

    async def search(request: Request) -> Response:
        query = check_query(request.query_params.get("q"))
        index = _int(request, "index", 0, 0, len(service.searchers) - 1)
        top_k = _int(request, "top_k", 5, 1, MAX_TOP_K)
        k = _int(request, "k", None, 1, MAX_K)
        if waiting["searches"] >= concurrent + queue:
            return JSONResponse({"error": f"busy: {waiting['searches']} searches running or queued; try again shortly"},
                                status_code=503, headers={"Retry-After": "1"})
        waiting["searches"] += 1
        try:
            async with slots:
                return JSONResponse(await run_in_threadpool(service.search, query, index, top_k, k))
        finally:
            waiting["searches"] -= 1

    async def filmstrip(request: Request) -> Response:
        index, row = int(request.path_params["index"]), int(request.path_params["row"])
        frames = _int(request, "frames", 6, 1, MAX_FRAMES)
        start, end = _float(request, "start"), _float(request, "end")
        data = await run_in_threadpool(service.filmstrip, index, row, start, end, frames)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def video(request: Request) -> Response:
        path = service.video_path(int(request.path_params["index"]), int(request.path_params["number"]))
        return FileResponse(path, media_type="video/mp4" if path.suffix.lower() in (".mp4", ".m4v") else None)

    async def exemplar(request: Request) -> Response:
        path = service.exemplar(int(request.path_params["word"]))
        if path is None:
            raise Refused(404, "no exemplar for this visual word")
        return FileResponse(path, media_type="image/jpeg")

    async def refused(request: Request, exc: Refused) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def failed(request: Request, exc: VideoBertError) -> Response:
        return JSONResponse({"error": str(exc).splitlines()[0]}, status_code=400 if isinstance(exc, ConfigError) else 500)

    routes = [
        Route("/", page), Route("/static/{name}", static), Route("/api/indexes", indexes), Route("/api/search", search),
        Route("/api/filmstrip/{index:int}/{row:int}.jpg", filmstrip), Route("/api/video/{index:int}/{number:int}", video),
        Route("/api/exemplar/{word:int}.jpg", exemplar),
    ]
    return Starlette(routes=routes, exception_handlers={Refused: refused, VideoBertError: failed})


def _float(request: Request, name: str) -> float:
    text = request.query_params.get(name)
    try:
        value = float(text) if text is not None else None
    except ValueError:
        value = None
    if value is None or value != value or not 0 <= value < 1e7:
        raise Refused(400, f"{name} must be a time in seconds")
    return value


__all__ = ["Card", "Refused", "SearchService", "check_query", "create_app"]
