"""Indexes of videos for search (the index stage): every clip's visual word, made with a model
folder's own settings, searched with ``videobert retrieve MODEL "query" --index INDEX``.

``folder`` (the INDEX folder: writing and :func:`load_index`), ``stage`` (``run``).
"""

from videobert.index.folder import Index, load_index

__all__ = ["Index", "load_index"]
