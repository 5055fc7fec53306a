"""Captioning transfer (paper §4.3): a transformer encoder-decoder over segment features, beam search, COCO caption metrics."""
