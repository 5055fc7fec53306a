"""Searching a model's indexes in a browser (``videobert serve``), and the hit cards the page and
Jupyter show: ``cards`` (merging hits, a card's HTML), ``app`` (the ASGI app and what it serves)."""
