"""The verb and the object of an instruction, for zero-shot classification as in the paper's
Table 1 ("now let me show you how to [MASK] the [MASK]").

The part-of-speech tagger is Brill's (1992): its lexicon and contextual rules, trained on the
Brown corpus and the Penn Treebank, as CLiPS Pattern packaged them and TextBlob ships them inside
its own PyPI wheel (``textblob/en/en-lexicon.txt``, ``en-context.txt``, ``en-morphology.txt``) —
the data comes from its authors' package, nothing is downloaded, and it tags the same way on every
machine. TextBlob's own ``tag()`` leaves the contextual rules out, so Pattern's ``find_tags`` is
called with them.

The verb: YouCook II's sentences are mostly instructions ("fry the chicken in hot oil"), whose
leading verb Brill's lexicon often takes for a noun or a participle; tagged as ``to <sentence>``,
the infinitive the template asks for, it reads as a verb. That reading is taken when the word,
tagged in the plain sentence, is a verb or a noun (so "next we see…" or "heat oil…", where the
word is an adjective, are not read as instructions). Otherwise the verb is the first word of the
plain sentence tagged ``VB*`` that is not an auxiliary (be, have, do). The object is the first
noun (``NN*``) after the verb. With word lists (``--verbs FILE --objects FILE``) the verb is
instead the first word of the sentence in the verb list and the object the first later word in
the object list. Words are lowercased (letters of any script); a sentence without one gets no
label for it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from videobert.errors import InputError
from videobert.readers import MAX_YAML_BYTES, decode_utf8, read_bytes

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
AUXILIARIES = frozenset("be is am are was were been being 's 're 'm has have had having do does did doing".split())


def words_of(sentence: str) -> list[str]:
    return _WORD.findall(sentence.lower())


class BrillTagger:
    """Penn Treebank tags of a list of words (module docstring)."""

    def __init__(self):
        from textblob._text import find_tags  # Pattern's tagger with the contextual rules
        from textblob.en import lexicon

        self._find_tags, self._lexicon = find_tags, lexicon

    def __call__(self, words: list[str]) -> list[str]:
        lexicon = self._lexicon
        tagged = self._find_tags(words, lexicon=lexicon, default=("NN", "NNP", "CD"), context=lexicon.context,
                                 morphology=lexicon.morphology)
        return [tag for _, tag in tagged]


def verb_object_by_tags(sentence: str, tagger: BrillTagger) -> tuple[str | None, str | None]:
    """(verb, object) of an instruction by its part-of-speech tags (module docstring)."""
    words = words_of(sentence)
    if not words:
        return None, None
    tags = tagger(words)
    instruction = tagger(["to", *words])[1:] if tags[0].startswith(("VB", "NN")) else None
    if instruction is not None and instruction[0] == "VB":
        verb_at, tags = 0, instruction  # the instruction's reading, also of the words after its verb
    else:
        verb_at = next((i for i, tag in enumerate(tags) if tag.startswith("VB") and words[i] not in AUXILIARIES), None)
    if verb_at is None:
        return None, None
    object_at = next((i for i in range(verb_at + 1, len(words)) if tags[i].startswith("NN")), None)
    return words[verb_at], (words[object_at] if object_at is not None else None)


def verb_object_by_lists(sentence: str, verbs: set[str], objects: set[str]) -> tuple[str | None, str | None]:
    """(verb, object): the first word in ``verbs``, then the first later word in ``objects``."""
    words = words_of(sentence)
    verb_at = next((i for i, word in enumerate(words) if word in verbs), None)
    if verb_at is None:
        return None, next((w for w in words if w in objects), None)
    return words[verb_at], next((w for w in words[verb_at + 1 :] if w in objects), None)


def read_word_list(path: str | Path) -> set[str]:
    """One word a line (``#`` starts a comment); an empty list is an error naming the file."""
    text = decode_utf8(read_bytes(path, "word list", MAX_YAML_BYTES), path, "word list")
    words = {line.split("#", 1)[0].strip().lower() for line in text.splitlines()}
    words.discard("")
    if not words:
        raise InputError(f"{path}: the word list is empty")
    return words


def labeller(verbs: Iterable[str] | None = None, objects: Iterable[str] | None = None):
    """``sentence -> (verb, object)``: from the word lists when both are given, else the tagger."""
    if verbs is not None and objects is not None:
        verb_set, object_set = set(verbs), set(objects)
        return lambda sentence: verb_object_by_lists(sentence, verb_set, object_set)
    tagger = BrillTagger()
    return lambda sentence: verb_object_by_tags(sentence, tagger)
