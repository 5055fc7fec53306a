"""Indexes of video segments for search (the index stage): segments of any videos with their
visual words and their dual-encoder vectors, made with a model folder's own settings, one folder
that grows, searched with ``videobert retrieve MODEL "query" --index INDEX``.

``folder`` (the INDEX folder: parts, writing them, :func:`open_index`), ``stage`` (``run``: adding
videos, ``run_remove``: taking them out).
"""

from videobert.index.folder import SearchIndex, open_index

__all__ = ["SearchIndex", "open_index"]
