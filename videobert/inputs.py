"""The input-sequence format of a VideoBERT: how text and visual words become the ids the
network reads. Training, evaluation, search, embedding and forecasting all build their inputs
here, so that a trained model is always read the way it was trained.

Sequences (joint ids, see :mod:`videobert.corpus.joint_vocab`; token type 0 on the text side, 1 on
the video side, ``[CLS]`` is type 0)::

    text only    [CLS] text [SEP]
    video only   [CLS] [>] video [SEP]
    video-text   [CLS] text [>] video [SEP]

Longer than ``max_len``: the video side is cut first, down to half of the room if the text needs
the rest; then the text, dropping whole trailing sentences of a concatenation before cutting a
sentence. A batch is padded to its longest member (to a multiple of 8 on CUDA, where tensor cores
want it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from videobert.corpus.joint_vocab import JointLayout, JointVocabulary
from videobert.text.wordpiece import TEXT_SPECIALS

IGNORE = -100  # the label of a position that is not a masked-token target


@dataclass(frozen=True)
class TokenLayout(JointLayout):
    """The ids a sequence is made of, as plain integers (picklable for data-loader workers)."""

    text_vocab_size: int
    visual_vocab_size: int
    pad_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    text_special_ids: tuple[int, ...]

    @classmethod
    def from_vocabulary(cls, vocab: JointVocabulary) -> "TokenLayout":
        return cls(
            vocab.text_vocab_size, vocab.visual_vocab_size, vocab.pad_id, vocab.cls_id, vocab.sep_id, vocab.mask_id,
            tuple(sorted(vocab.special_ids[token] for token in TEXT_SPECIALS)),
        )

    @functools.cached_property
    def is_text_special(self) -> np.ndarray:
        """bool [size]: whether each id is one of ``text_special_ids`` (a lookup, not a search)."""
        table = np.zeros(self.size, bool)
        table[list(self.text_special_ids)] = True
        return table


def build_input(
    layout: TokenLayout,
    text_ids: Sequence[int] | None,
    visual_words: Sequence[int] | None,
    max_len: int | None = None,
    sentence_ends: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """One unmasked sequence: ``[CLS] text [>] video [SEP]`` when both sides are given (text-only
    or video-only layouts when one is empty or None). ``visual_words`` are 0 … V-1.

    Returns ``input_ids`` and ``token_type_ids``, int64 [L]; at most ``max_len`` tokens (see the
    module docstring for what is cut). ``sentence_ends``: cumulative token counts of the sentences
    that make up ``text_ids``, so that truncation drops whole sentences first.
    """
    text = np.asarray(text_ids if text_ids is not None else [], dtype=np.int64)
    video = np.asarray(visual_words if visual_words is not None else [], dtype=np.int64)
    if text.size == 0 and video.size == 0:
        raise ValueError("a sequence needs text or video")
    if max_len is not None:
        text, video = _truncate(text, video, max_len, sentence_ends)
    if video.size:
        input_ids = np.concatenate([[layout.cls_id], text, [layout.video_sep_id], video + layout.visual_offset, [layout.sep_id]])
        token_types = np.concatenate([np.zeros(1 + text.size), np.ones(video.size + 2)])
    else:
        input_ids = np.concatenate([[layout.cls_id], text, [layout.sep_id]])
        token_types = np.zeros(text.size + 2)
    return {"input_ids": input_ids.astype(np.int64), "token_type_ids": token_types.astype(np.int64)}


def _truncate(text: np.ndarray, video: np.ndarray, max_len: int, sentence_ends: Sequence[int] | None):
    specials = 2 + (1 if video.size else 0)
    room = max_len - specials
    if room < (1 if text.size == 0 or video.size == 0 else 2):
        raise ValueError(f"max_len {max_len} leaves no room for the sequence")
    if text.size + video.size <= room:
        return text, video
    if video.size:
        keep_video = max(room - text.size, min(video.size, room // 2)) if text.size else room
        video = video[:keep_video]
    text_room = room - video.size
    if text.size > text_room and sentence_ends is not None:
        whole = [end for end in sentence_ends if end <= text_room]
        if whole:
            text_room = whole[-1]
    return text[:text_room], video


def collate_inputs(inputs: Sequence[dict[str, np.ndarray]], pad_id: int, pad_to_multiple: int = 1) -> dict[str, torch.Tensor]:
    """Pad sequences from :func:`build_input` to the longest (rounded up to ``pad_to_multiple``).

    Returns ``input_ids``, ``token_type_ids``, ``attention_mask`` (1 real, 0 padding): int64 [B, L].
    """
    length = max(len(x["input_ids"]) for x in inputs)
    length = -(-length // pad_to_multiple) * pad_to_multiple
    input_ids = np.full((len(inputs), length), pad_id, np.int64)
    token_types = np.zeros((len(inputs), length), np.int64)
    attention = np.zeros((len(inputs), length), np.int64)
    for row, x in enumerate(inputs):
        n = len(x["input_ids"])
        input_ids[row, :n] = x["input_ids"]
        token_types[row, :n] = x["token_type_ids"]
        attention[row, :n] = 1
    return {
        "input_ids": torch.from_numpy(input_ids),
        "token_type_ids": torch.from_numpy(token_types),
        "attention_mask": torch.from_numpy(attention),
    }


def pad_multiple(device: torch.device) -> int:
    """What batches are padded to a multiple of on ``device``: 8 on CUDA (tensor cores), else 1."""
    return 8 if device.type == "cuda" else 1


def masked_video_input(layout: TokenLayout, text: Sequence[int], span: int, max_len: int) -> dict[str, np.ndarray]:
    """``[CLS] text [>] [MASK]×span [SEP]`` with the video-side token types (the masks stand for
    visual words)."""
    sequence = build_input(layout, text, np.zeros(span, np.int64), max_len)
    ids = sequence["input_ids"]
    ids[np.flatnonzero(ids >= layout.visual_offset)] = layout.mask_id
    return sequence
