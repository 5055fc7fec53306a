"""WordPiece: the text side's ids, from a local BERT tokenizer folder or trained on a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizerFast

from videobert.errors import InputError
from videobert.readers import MAX_JSON_BYTES, check_size

TEXT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# the files of a tokenizer folder the Hugging Face loader opens
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def load_tokenizer(folder: str | Path) -> BertTokenizerFast:
    """A WordPiece tokenizer from a local Hugging Face folder (``vocab.txt`` or ``tokenizer.json``);
    each file the loader opens must be a regular file within the JSON size cap (a FIFO would
    block it, ``/dev/zero`` never end)."""
    folder = Path(folder)
    if not folder.is_dir() or not any((folder / name).exists() for name in ("vocab.txt", "tokenizer.json")):
        raise InputError(f"{folder}: not a tokenizer folder (needs vocab.txt or tokenizer.json)", "missing")
    for name in TOKENIZER_FILES:
        if (folder / name).exists() or (folder / name).is_symlink():
            check_size(folder / name, "tokenizer file", MAX_JSON_BYTES)
    try:
        tokenizer = BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise InputError(f"{folder}: cannot load the tokenizer ({(str(exc).splitlines() or [type(exc).__name__])[0][:160]})") from None
    missing = [t for t in TEXT_SPECIALS if t not in tokenizer.get_vocab()]
    if missing:
        raise InputError(f"{folder}: tokenizer vocabulary lacks {', '.join(missing)}")
    return tokenizer


def encode_texts(tokenizer: BertTokenizerFast, texts: list[str]) -> list[list[int]]:
    """WordPiece ids of each text read as text: no special token added, and none read from the
    text — "[SEP]" typed in a sentence is the pieces of those characters, not the separator id."""
    encoded = tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    structural = {tokenizer.convert_tokens_to_ids(t) for t in TEXT_SPECIALS if t != "[UNK]"}
    if any(structural.intersection(ids) for ids in encoded):  # a tokenizer that ignores split_special_tokens
        encoded = tokenizer([text.replace("[", "[ ") for text in texts], add_special_tokens=False)["input_ids"]
    return [[i for i in ids if i not in structural] for ids in encoded]


def unknown_words(tokenizer: BertTokenizerFast, text: str) -> tuple[list[str], int]:
    """The words of ``text`` the vocabulary does not hold whole (split into pieces, or [UNK]),
    and the number of words: what a user should hear of before trusting a ranking that the
    model computed from character fragments."""
    encoded = tokenizer(text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    pieces: dict[int, list[int]] = {}
    for position, word in enumerate(encoded.word_ids()):
        if word is not None:
            pieces.setdefault(word, []).append(encoded["input_ids"][position])
    unk = tokenizer.convert_tokens_to_ids("[UNK]")
    unknown = []
    for word, ids in pieces.items():
        if len(ids) > 1 or ids[0] == unk:
            span = encoded.word_to_chars(word)
            unknown.append(text[span.start:span.end])
    return unknown, len(pieces)


def warn_unknown(tokenizer: BertTokenizerFast, text: str, what: str, log) -> None:
    """Log a warning when most words of ``text`` (a query, a template, ``--text``) are unknown
    to the vocabulary (:func:`unknown_words`), naming them with the count."""
    unknown, words = unknown_words(tokenizer, text)
    if words and 2 * len(unknown) > words:
        shown = ", ".join(repr(w) for w in unknown[:8]) + (", ..." if len(unknown) > 8 else "")
        log.warning("%d of the %d words of the %s %r are not in the model's WordPiece vocabulary and are read "
                    "as fragments (%s): its results say little about them", len(unknown), words, what, text, shown)


def train_wordpiece(
    texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2, lowercase: bool = True
) -> BertTokenizerFast:
    """A BERT-style WordPiece tokenizer trained on ``texts`` with Hugging Face ``tokenizers``,
    wrapped as ``transformers.BertTokenizerFast``.

    BERT's normalisation (``lowercase`` also strips accents) and pre-tokenisation (whitespace and
    punctuation), ``##`` continuation pieces, and the specials [PAD] [UNK] [CLS] [SEP] [MASK] as
    ids 0-4. The vocabulary has at most ``vocab_size`` entries: fewer when the texts do not hold
    enough distinct pieces seen ``min_frequency`` times.

    The same texts give the same tokenizer in every process. The trainer hands out ids in hash
    order, which differs per process, and breaks ties between equally frequent merges by those
    ids; so every ``##`` character of the texts is declared up front (they would all be learned
    anyway) and the ids are renumbered canonically: the specials, single characters, ``##``
    characters, then longer pieces, each group sorted.

    ``texts`` is read twice (the alphabet, then training): an iterator is first read into a list,
    so pass a re-iterable collection to stream a corpus larger than memory.
    """
    texts = list(texts) if iter(texts) is texts else texts
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    alphabet = sorted({char for text in texts for char in normalizer.normalize_str(text) if not char.isspace()})
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size + len(alphabet),
        min_frequency=min_frequency,
        special_tokens=[*TEXT_SPECIALS, *(f"##{char}" for char in alphabet)],
        continuing_subword_prefix="##",
        show_progress=False,
    )
    trained = _bare_tokenizer(models.WordPiece(unk_token="[UNK]"), normalizer)
    trained.train_from_iterator(texts, trainer)
    vocab = _canonical_ids(trained.get_vocab(), vocab_size)
    tokenizer = _bare_tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"), normalizer)
    tokenizer.add_special_tokens(list(TEXT_SPECIALS))
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


def _bare_tokenizer(model: models.WordPiece, normalizer: normalizers.BertNormalizer) -> Tokenizer:
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _canonical_ids(vocab: dict[str, int], vocab_size: int) -> dict[str, int]:
    """The pieces of ``vocab`` renumbered: specials first, then single characters, ``##``
    characters and longer pieces, each group in sorted order; longer pieces past ``vocab_size``
    entries are dropped, last learned first."""
    pieces = [piece for piece in vocab if piece not in TEXT_SPECIALS]
    singles = sorted((piece for piece in pieces if len(piece.removeprefix("##")) == 1),
                     key=lambda piece: (piece.startswith("##"), piece))
    longer = sorted((piece for piece in pieces if len(piece.removeprefix("##")) > 1), key=vocab.__getitem__)
    longer = sorted(longer[: max(0, vocab_size - len(TEXT_SPECIALS) - len(singles))])
    return {piece: index for index, piece in enumerate([*TEXT_SPECIALS, *singles, *longer])}
