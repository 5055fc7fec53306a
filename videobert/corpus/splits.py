"""Train, val and test for videos whose manifest gives no split (a folder of videos, a manifest
without ``split``): drawn per video from a hash of the seed and the video id.

Each video's draw is ``u = sha256("<seed>:<video_id>")`` read as a number in [0, 1): ``u <
test_share`` is test, ``u < test_share + val_share`` is val, the rest train. A video's split
depends on nothing but its id and the seed — not on the order of the list nor on the other
videos — so adding videos never moves the ones already there, and the same corpus gets the same
splits on every machine.

A small corpus may draw no video into a split (6 videos at 10 % each leave test empty half the
time). Where the drawn videos allow it (three or more: one each, and train keeps the rest), an
empty test split, then an empty val split, takes the train video of the smallest draw — a video
with a transcript when there is one, since evaluation ranks sentences. Those borrowed videos are
listed; with more videos the shares fill the splits themselves and nothing is borrowed.
Videos the manifest gives a split keep it, and count towards the splits being filled.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Sequence

from videobert.manifest import VideoEntry


def split_draw(video_id: str, seed: int) -> float:
    """The video's draw in [0, 1): the first 8 bytes of sha256("<seed>:<video_id>") over 2^64."""
    digest = hashlib.sha256(f"{seed}:{video_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_splits(entries: Sequence[VideoEntry], val_share: float, test_share: float, seed: int,
                  has_text: Callable[[VideoEntry], bool] = lambda entry: True) -> tuple[list[VideoEntry], dict]:
    """``entries`` with every missing split drawn (module docstring), and a record of what was
    done: ``given`` and ``drawn`` video counts, the shares and seed, ``borrowed`` (split -> the
    video ids taken from train to fill it)."""
    drawn: dict[str, float] = {}
    splits: dict[str, str] = {}
    for entry in entries:
        if entry.split is not None:
            splits[entry.video_id] = entry.split
            continue
        u = drawn[entry.video_id] = split_draw(entry.video_id, seed)
        splits[entry.video_id] = "test" if u < test_share else "val" if u < test_share + val_share else "train"
    borrowed: dict[str, list[str]] = {}
    if len(drawn) >= 3:
        by_id = {entry.video_id: entry for entry in entries}
        for split, share in (("test", test_share), ("val", val_share)):
            if share <= 0 or split in splits.values():
                continue
            train = sorted((u, video_id) for video_id, u in drawn.items() if splits[video_id] == "train")
            if len(train) < 2:
                continue
            spoken = [pair for pair in train if has_text(by_id[pair[1]])]
            _, chosen = (spoken or train)[0]
            splits[chosen] = split
            borrowed[split] = [chosen]
    record = {"given": len(entries) - len(drawn), "drawn": len(drawn), "seed": seed, "val_share": val_share,
              "test_share": test_share, "borrowed": borrowed}
    out = [entry if entry.split is not None else dataclasses.replace(entry, split=splits[entry.video_id])
           for entry in entries]
    return out, record
