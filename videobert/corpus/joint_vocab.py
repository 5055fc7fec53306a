"""The joint vocabulary: WordPiece text ids, then the video separator, then the visual words.

=================  ==========================================================
ids                tokens
=================  ==========================================================
``0 … T-1``        the WordPiece vocabulary, with [PAD] [UNK] [CLS] [SEP] [MASK]
``T``              ``[>]``, the separator between the text and the video
``T+1 … T+V``      visual words 0 … V-1 (``visual_offset = T+1``)
=================  ==========================================================

Saved as ``vocabulary.json`` beside a ``tokenizer/`` folder (Hugging Face ``BertTokenizerFast``
format), and used unchanged by training, evaluation and the notebook. In a model folder its
``visual_vocab`` is the relative path of the copied visual vocabulary and ``codebook`` that
codebook's hash (:mod:`videobert.model_folder`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from videobert.errors import InputError
from videobert.readers import Field, check_fields
from videobert.store import atomic_write_json, read_json
from videobert.text.wordpiece import TEXT_SPECIALS, encode_texts, load_tokenizer, unknown_words, warn_unknown

log = logging.getLogger(__name__)

VIDEO_SEP = "[>]"
MASK = "[MASK]"  # a template's slot to fill (JointVocabulary.encode_template)


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


@dataclass
class JointVocabulary(JointLayout):
    """Text tokenizer plus ``visual_vocab_size`` visual words in one id space."""

    tokenizer: object  # transformers.BertTokenizerFast
    visual_vocab_size: int
    visual_vocab: str | None = None  # the visual vocabulary (VOCAB folder; relative paths: to vocabulary.json's folder)
    codebook: str | None = None  # hash of that vocabulary's codebook, where it is recorded

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
        """WordPiece ids of ``text`` read as text: the one place text becomes ids. No special
        tokens are added, and none is read from the text either — "[SEP]" or "[MASK]" typed in a
        query, a caption or ``--text`` is the word pieces of those characters, never the
        structural ids (which would let text rewrite the input's structure)."""
        return encode_texts(self.tokenizer, [text])[0]

    def unknown_words(self, text: str) -> tuple[list[str], int]:
        """The words of ``text`` the WordPiece vocabulary does not hold whole, and the word count."""
        return unknown_words(self.tokenizer, text)

    def warn_unknown(self, text: str, what: str) -> None:
        """Warn when most words of ``text`` are not in the WordPiece vocabulary (the model reads
        them as fragments); ``what`` names it in the message ("query", "template"). Once per
        text and kind for the life of the vocabulary (a template is read once per video)."""
        warned = self.__dict__.setdefault("_warned", set())
        if (what, text) not in warned:
            warned.add((what, text))
            warn_unknown(self.tokenizer, text.replace(MASK, " "), what, log)

    def encode_template(self, template: str) -> list[int]:
        """WordPiece ids of a fill-in-the-blank template: each literal ``[MASK]`` is the mask id
        (the slots to fill), everything between them is text (:meth:`encode_text`)."""
        pieces = template.split(MASK)
        ids: list[int] = []
        for number, piece in enumerate(pieces):
            ids += self.encode_text(piece)
            if number < len(pieces) - 1:
                ids.append(self.mask_id)
        return ids

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
            "codebook": self.codebook,
        }

    def save(self, folder: str | Path) -> None:
        """Write ``vocabulary.json`` and ``tokenizer/`` into ``folder``."""
        folder = Path(folder)
        (folder / "tokenizer").mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(folder / "tokenizer"))
        atomic_write_json(folder / "vocabulary.json", self.to_json())

    @classmethod
    def load(cls, folder: str | Path) -> "JointVocabulary":
        """Read ``vocabulary.json`` and its tokenizer from ``folder``; check its fields
        (:data:`VOCABULARY_FIELDS`: the tokenizer a folder inside ``folder``) and that they agree
        with the tokenizer."""
        folder = Path(folder)
        path = folder / "vocabulary.json"
        data = check_fields(read_json(path, "joint vocabulary"), path, VOCABULARY_FIELDS)
        name = data.get("tokenizer", "tokenizer")
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise InputError(f"{path}: tokenizer: {name[:80]!r} is not the name of a folder beside vocabulary.json")
        tokenizer = load_tokenizer(folder / name)
        visual_vocab = data.get("visual_vocab")
        if visual_vocab is not None and not Path(visual_vocab).is_absolute():  # inside a model folder
            visual_vocab = str(folder / visual_vocab)
        vocab = cls(tokenizer, data["visual_vocab_size"], visual_vocab, data.get("codebook"))
        if vocab.text_vocab_size != data["text_vocab_size"] or vocab.size != data["size"]:
            raise InputError(
                f"{path}: tokenizer has {vocab.text_vocab_size} entries but the file records "
                f"{data['text_vocab_size']}; the folder was modified"
            )
        return vocab


# the fields of vocabulary.json, by type and bounds
VOCABULARY_FIELDS = {
    "text_vocab_size": Field("int", 1, 10_000_000),
    "visual_vocab_size": Field("int", 0, 10_000_000),
    "size": Field("int", 1, 20_000_001),
    "tokenizer": Field("str", required=False),
    "visual_vocab": Field("str", required=False, nullable=True),
    "codebook": Field("str", required=False, nullable=True),
    "special_ids": Field("dict", required=False),
}
