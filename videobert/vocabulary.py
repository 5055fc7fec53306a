"""The joint vocabulary: WordPiece text ids, then the video separator, then the visual words.

=================  ==========================================================
ids                tokens
=================  ==========================================================
``0 … T-1``        the WordPiece vocabulary, with [PAD] [UNK] [CLS] [SEP] [MASK]
``T``              ``[>]``, the separator between the text and the video
``T+1 … T+V``      visual words 0 … V-1 (``visual_offset = T+1``)
=================  ==========================================================

Saved as ``vocabulary.json`` beside a ``tokenizer/`` folder (Hugging Face ``BertTokenizerFast``
format), and used unchanged by training, evaluation and the notebook.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from videobert.errors import InputError

VIDEO_SEP = "[>]"
TEXT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class JointLayout:
    """The id layout above, for any class with ``text_vocab_size`` and ``visual_vocab_size``."""

    @property
    def video_sep_id(self) -> int:
        return self.text_vocab_size

    @property
    def visual_offset(self) -> int:
        return self.text_vocab_size + 1

    @property
    def size(self) -> int:
        return self.visual_offset + self.visual_vocab_size


def load_tokenizer(folder: str | Path):
    """A WordPiece tokenizer from a local Hugging Face folder (``vocab.txt`` or ``tokenizer.json``)."""
    from transformers import BertTokenizerFast

    folder = Path(folder)
    if not folder.is_dir() or not any((folder / name).exists() for name in ("vocab.txt", "tokenizer.json")):
        raise InputError(f"{folder}: not a tokenizer folder (needs vocab.txt or tokenizer.json)")
    try:
        tokenizer = BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: cannot load the tokenizer ({str(exc).splitlines()[0]})") from None
    missing = [t for t in TEXT_SPECIALS if t not in tokenizer.get_vocab()]
    if missing:
        raise InputError(f"{folder}: tokenizer vocabulary lacks {', '.join(missing)}")
    return tokenizer


@dataclass
class JointVocabulary(JointLayout):
    """Text tokenizer plus ``visual_vocab_size`` visual words in one id space."""

    tokenizer: object  # transformers.BertTokenizerFast
    visual_vocab_size: int
    visual_vocab: str | None = None  # where the visual vocabulary (VOCAB folder) was read from

    @property
    def text_vocab_size(self) -> int:
        return len(self.tokenizer)

    def special_id(self, token: str) -> int:
        if token == VIDEO_SEP:
            return self.video_sep_id
        return int(self.tokenizer.convert_tokens_to_ids(token))

    @property
    def pad_id(self) -> int:
        return self.special_id("[PAD]")

    @property
    def unk_id(self) -> int:
        return self.special_id("[UNK]")

    @property
    def cls_id(self) -> int:
        return self.special_id("[CLS]")

    @property
    def sep_id(self) -> int:
        return self.special_id("[SEP]")

    @property
    def mask_id(self) -> int:
        return self.special_id("[MASK]")

    @property
    def special_ids(self) -> dict[str, int]:
        return {token: self.special_id(token) for token in (*TEXT_SPECIALS, VIDEO_SEP)}

    def encode_text(self, text: str) -> list[int]:
        """WordPiece ids of ``text``, without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def visual_ids(self, words: Sequence[int] | np.ndarray) -> np.ndarray:
        """Joint ids of visual words 0 … V-1."""
        words = np.asarray(words, dtype=np.int64)
        if words.size and (words.min() < 0 or words.max() >= self.visual_vocab_size):
            raise ValueError(f"visual word outside 0..{self.visual_vocab_size - 1}")
        return words + self.visual_offset

    def is_visual(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        return (ids >= self.visual_offset) & (ids < self.size)

    def is_text(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(ids) < self.text_vocab_size

    def token(self, token_id: int) -> str:
        """Readable form of one id: WordPiece, ``[>]`` or ``v<word>``."""
        if token_id == self.video_sep_id:
            return VIDEO_SEP
        if token_id >= self.visual_offset:
            return f"v{token_id - self.visual_offset}"
        return str(self.tokenizer.convert_ids_to_tokens(int(token_id)))

    def to_json(self) -> dict:
        return {
            "text_vocab_size": self.text_vocab_size,
            "visual_vocab_size": self.visual_vocab_size,
            "visual_offset": self.visual_offset,
            "size": self.size,
            "special_ids": self.special_ids,
            "tokenizer": "tokenizer",
            "visual_vocab": self.visual_vocab,
        }

    def save(self, folder: str | Path) -> None:
        """Write ``vocabulary.json`` and ``tokenizer/`` into ``folder``."""
        from videobert.store import atomic_write_json

        folder = Path(folder)
        (folder / "tokenizer").mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(folder / "tokenizer"))
        atomic_write_json(folder / "vocabulary.json", self.to_json())

    @classmethod
    def load(cls, folder: str | Path) -> "JointVocabulary":
        """Read ``vocabulary.json`` and its tokenizer from ``folder``; check they agree."""
        folder = Path(folder)
        path = folder / "vocabulary.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: joint vocabulary not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot read the joint vocabulary ({exc})") from None
        tokenizer = load_tokenizer(folder / data.get("tokenizer", "tokenizer"))
        vocab = cls(tokenizer, int(data["visual_vocab_size"]), data.get("visual_vocab"))
        if vocab.text_vocab_size != data["text_vocab_size"] or vocab.size != data["size"]:
            raise InputError(
                f"{path}: tokenizer has {vocab.text_vocab_size} entries but the file records "
                f"{data['text_vocab_size']}; the folder was modified"
            )
        return vocab
