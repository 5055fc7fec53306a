"""What a search shows a person: hit cards — the page of ``videobert serve`` and Jupyter draw the
same ones.

Hits of one video whose spans overlap or touch merge into one card (its span the union, its scores
the best of its hits, its sentences each once). "Why it matched": the visual words the query calls
up (the model's text-to-video, paper Fig. 6) with their exemplar thumbnails, and which of them the
card's segments hold. Everything that came from names and data is escaped for HTML.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from videobert.errors import InputError
from videobert.media import frames_across, segment_mp4
from videobert.search import Hit


@dataclass
class Card:
    """One card: the merged hits of one video (module docstring)."""

    rank: int
    video_id: str
    start: float
    end: float
    score: float  # the cross-encoder's alignment probability, the best of the card's hits
    first_stage: float | None  # the dual encoder's similarity, the best of the card's hits
    sentences: list[str]
    rows: list[int]  # the index rows of the card's segments
    words: list[int] = field(default_factory=list)  # the card's visual words that the query calls up

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "video_id": self.video_id, "start": round(self.start, 3), "end": round(self.end, 3),
                "score": self.score, "first_stage": self.first_stage, "sentences": self.sentences, "rows": self.rows,
                "words": self.words}


def merge_hits(hits: Sequence[Hit]) -> list[Card]:
    """Cards of ``hits`` (best first): hits of one video whose spans overlap or touch are one card,
    ranked by its best hit."""
    cards: list[Card] = []
    for hit in hits:
        card = Card(0, hit.video_id, hit.start, hit.end, hit.score, hit.first_stage, [hit.text] if hit.text else [],
                    [hit.row])
        cards.append(card)
        while True:  # a card that grew may now reach another one of its video: the earlier one keeps both
            touching = next((c for c in cards if c is not card and c.video_id == card.video_id
                             and card.start <= c.end and c.start <= card.end), None)
            if touching is None:
                break
            keep, gone = sorted((card, touching), key=cards.index)
            _absorb(keep, gone)
            cards.remove(gone)
            card = keep
    for rank, card in enumerate(cards, start=1):
        card.rank = rank
    return cards


def _absorb(into: Card, other: Card) -> None:
    """``into`` becomes the union of both cards (it keeps its place: it holds the better hit)."""
    into.start, into.end = min(into.start, other.start), max(into.end, other.end)
    into.score = max(into.score, other.score)
    stages = [x for x in (into.first_stage, other.first_stage) if x is not None]
    into.first_stage = max(stages) if stages else None
    into.sentences += [s for s in other.sentences if s not in into.sentences]
    into.rows += [r for r in other.rows if r not in into.rows]


def jpeg_data(image: np.ndarray | Image.Image, quality: int = 85) -> bytes:
    """JPEG bytes of an RGB image."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def strip_image(frames: np.ndarray, height: int = 96) -> Image.Image:
    """A filmstrip: frames uint8 [n, H, W, 3] side by side, each scaled to ``height`` pixels."""
    tiles = []
    for frame in frames:
        tile = Image.fromarray(np.asarray(frame, np.uint8))
        tiles.append(tile.resize((max(1, round(tile.width * height / tile.height)), height)))
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 2 * max(0, len(tiles) - 1), height), (20, 20, 20))
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width + 2
    return strip


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def card_html(card: Card, filmstrip: str | None, video: str | None, exemplars: dict[int, str] | None = None,
              missing: str | None = None, clip_start: float = 0.0) -> str:
    """One card as HTML: its filmstrip (``filmstrip``: an image URL, None when there is none), the
    video id, time span, sentences, both scores, the query's visual words it holds (``exemplars``:
    word -> image URL), and the video to play from the card's start to its end (``video``: its URL,
    or None with ``missing`` saying why; a clip that begins at ``clip_start`` seconds of the video
    plays from the card's start less that). Every piece of data is escaped."""
    e = html.escape
    first = f"{card.first_stage:.3f}" if card.first_stage is not None else "–"
    start, end = card.start - clip_start, card.end - clip_start
    parts = [f'<div class="vb-card" data-start="{start:.3f}" data-end="{end:.3f}">',
             f'<div class="vb-head"><span class="vb-rank">#{card.rank}</span> <span class="vb-id">{e(card.video_id)}</span> '
             f'<span class="vb-span">{card.start:.1f}–{card.end:.1f} s</span></div>']
    if filmstrip:
        parts.append(f'<img class="vb-strip" alt="frames of {e(card.video_id)}" src="{e(filmstrip)}">')
    if video:
        parts.append(f'<video class="vb-player" controls preload="metadata" src="{e(video)}#t={start:.3f},{end:.3f}">'
                     "</video>")
    else:
        parts.append(f'<div class="vb-missing">video missing: {e(missing or "the index names no file for it")}</div>')
    parts.append(f'<div class="vb-scores">match <b>{card.score:.3f}</b> (cross-encoder) · first stage {first}</div>')
    for sentence in card.sentences:
        parts.append(f'<div class="vb-sentence">“{e(sentence)}”</div>')
    if card.words:
        held = "".join(f'<img class="vb-word" title="visual word {int(w)}" alt="v{int(w)}" src="{e((exemplars or {}).get(int(w), ""))}">'
                       if (exemplars or {}).get(int(w)) else f'<span class="vb-word">v{int(w)}</span>' for w in card.words)
        parts.append(f'<div class="vb-why">holds the query\'s visual words {held}</div>')
    parts.append("</div>")
    return "".join(parts)


CARD_CSS = """
.vb-cards{display:flex;flex-wrap:wrap;gap:12px;font-family:system-ui,sans-serif;font-size:13px}
.vb-card{border:1px solid #ccc;border-radius:6px;padding:8px;width:360px;background:#fafafa;cursor:pointer}
.vb-card video{max-height:200px;background:#000}
.vb-card.vb-playing{border-color:#c0392b;box-shadow:0 0 0 2px #c0392b33}
.vb-head{margin-bottom:4px}.vb-rank{font-weight:bold}.vb-id{font-family:monospace}.vb-span{color:#555}
.vb-strip{max-width:100%;display:block;margin:4px 0}.vb-player{width:100%;margin:4px 0}
.vb-missing{color:#a00;margin:4px 0}.vb-sentence{color:#333;font-style:italic}
.vb-word{width:28px;height:28px;margin-right:2px;vertical-align:middle;font-family:monospace}
.vb-why{margin-top:4px;color:#555}
"""


def cards_html(cards_and_parts: Sequence[str]) -> str:
    """Cards side by side, with their style (what Jupyter shows)."""
    return f"<style>{CARD_CSS}</style><div class=\"vb-cards\">{''.join(cards_and_parts)}</div>"


def notebook_cards(hits: Sequence[Hit], video_path) -> str:
    """The cards of ``hits`` as self-contained HTML for Jupyter: each filmstrip and each segment's
    seconds (a small MP4) embedded, so the notebook needs no server; ``video_path(video_id)`` gives
    a video's file (None: the card says so)."""
    parts = []
    for card in merge_hits(hits):
        path = video_path(card.video_id)
        strip = video = missing = None
        if path is None:
            missing = "the index names no file for it"
        else:
            try:
                strip = data_uri(jpeg_data(strip_image(frames_across(path, card.start, card.end, 6))), "image/jpeg")
                video = data_uri(segment_mp4(path, card.start, card.end), "video/mp4")
            except InputError as exc:
                missing = str(exc).splitlines()[0]
        parts.append(card_html(card, strip, video, None, missing, clip_start=card.start if video else 0.0))
    return cards_html(parts)


class SearchHits(list):
    """The hits of a search (a list of :class:`videobert.search.Hit`, best first); Jupyter shows
    them as cards (:func:`notebook_cards`)."""

    def __init__(self, hits: Sequence[Hit], video_path):
        super().__init__(hits)
        self._video_path = video_path

    def _repr_html_(self) -> str:
        return notebook_cards(self, self._video_path)
