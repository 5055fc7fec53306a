"""Text-to-video (paper Fig. 6): the visual words a sentence calls up.

``[CLS] sentence [>] [MASK]×n [SEP]``: the masks are filled one at a time, the most confident
first, each prediction restricted to visual words and fed back.
"""

from __future__ import annotations

import numpy as np
import torch

from videobert.errors import ConfigError, InputError
from videobert.inference import LoadedModel, forward_sequences
from videobert.inputs import masked_video_input


@torch.no_grad()
def text_to_video(loaded: LoadedModel, sentence: str, n_words: int = 4) -> tuple[list[int], list[float]]:
    """Visual words (0 … V-1) predicted for ``sentence``, in clip order, and the probability each
    had when it was chosen. The ``n_words`` masks are filled iteratively, most confident first."""
    layout = loaded.layout
    loaded.vocab.warn_unknown(sentence, "sentence")
    text = loaded.vocab.encode_text(sentence)
    if not text:
        raise ConfigError(f"the sentence {sentence!r} has no WordPiece the model knows")
    if n_words < 1:
        raise ConfigError("n_words must be at least 1")
    sequence = masked_video_input(layout, text, n_words, loaded.max_len)
    slots = np.flatnonzero(sequence["input_ids"] == layout.mask_id)
    if slots.size < n_words:
        raise InputError(f"the sentence is too long for {n_words} video tokens within max_len {loaded.max_len}")
    chosen: dict[int, tuple[int, float]] = {}
    for _ in range(n_words):
        open_slots = [int(p) for p in slots if int(p) not in chosen]
        _, logits = forward_sequences(loaded, [sequence], [open_slots])
        visual = torch.softmax(torch.from_numpy(logits[0][:, layout.visual_offset : layout.size]).double(), dim=-1)
        best_prob, best_word = visual.max(dim=-1)
        pick = int(best_prob.argmax())
        word, prob = int(best_word[pick]), float(best_prob[pick])
        chosen[open_slots[pick]] = (word, prob)
        sequence["input_ids"][open_slots[pick]] = word + layout.visual_offset
    order = sorted(chosen)
    return [chosen[p][0] for p in order], [chosen[p][1] for p in order]
