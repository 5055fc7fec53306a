"""WordPiece: the text side's ids, from a local BERT tokenizer folder or trained on a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizerFast

from videobert.errors import InputError

TEXT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def load_tokenizer(folder: str | Path) -> BertTokenizerFast:
    """A WordPiece tokenizer from a local Hugging Face folder (``vocab.txt`` or ``tokenizer.json``)."""
    folder = Path(folder)
    if not folder.is_dir() or not any((folder / name).exists() for name in ("vocab.txt", "tokenizer.json")):
        raise InputError(f"{folder}: not a tokenizer folder (needs vocab.txt or tokenizer.json)", "missing")
    try:
        tokenizer = BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: cannot load the tokenizer ({str(exc).splitlines()[0]})") from None
    missing = [t for t in TEXT_SPECIALS if t not in tokenizer.get_vocab()]
    if missing:
        raise InputError(f"{folder}: tokenizer vocabulary lacks {', '.join(missing)}")
    return tokenizer


def train_wordpiece(
    texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2, lowercase: bool = True
) -> BertTokenizerFast:
    """A BERT-style WordPiece tokenizer trained on ``texts`` with Hugging Face ``tokenizers``,
    wrapped as ``transformers.BertTokenizerFast``.

    BERT's normalisation (``lowercase`` also strips accents) and pre-tokenisation (whitespace and
    punctuation), ``##`` continuation pieces, and the specials [PAD] [UNK] [CLS] [SEP] [MASK] as
    ids 0-4. The vocabulary has at most ``vocab_size`` entries: fewer when the texts do not hold
    enough distinct pieces seen ``min_frequency`` times.
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(TEXT_SPECIALS),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return BertTokenizerFast(
        tokenizer_object=tokenizer,
        do_lower_case=lowercase,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
