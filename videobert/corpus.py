"""The aligned training corpus: sentences paired with the visual words of their time span.

Format (see docs/formats.md): ``CORPUS/{train,val,test}.jsonl``, one example per line::

    {"video_id", "index", "start", "end", "text", "text_ids", "video_ids", "first_clip"}

with the joint vocabulary (``vocabulary.json`` + ``tokenizer/``) beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videobert.errors import InputError

SPLITS = ("train", "val", "test")
EXAMPLE_KEYS = ("video_id", "index", "start", "end", "text", "text_ids", "video_ids", "first_clip")


def split_path(corpus_dir: str | Path, split: str) -> Path:
    return Path(corpus_dir) / f"{split}.jsonl"


def load_corpus(corpus_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The examples of one split, in corpus order (by video, then time)."""
    if split not in SPLITS:
        raise InputError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    path = split_path(corpus_dir, split)
    if not path.exists():
        raise InputError(f"{path}: no such corpus split (build it with 'videobert corpus')")
    examples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                example = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
            missing = [key for key in EXAMPLE_KEYS if key not in example]
            if missing:
                raise InputError(f"{path}:{number}: example lacks {', '.join(missing)}")
            examples.append(example)
    return examples
