"""A pretraining corpus made straight from the synthetic generator's plans, without video.

Each narrated segment becomes a sentence; each 1.5 s clip a visual word that is a noisy function
of what happens in it: ``colour·6 + action`` with probability ``signal``, another word otherwise
(background clips get words ``36 … V-1``). Silent segments become video-only examples. Written in
the corpus format of docs/formats.md with a WordPiece tokenizer trained on the narrations.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from videobert.synthetic import ACTIONS, COLOURS, SynthConfig, plan_corpus
from videobert.vocabulary import TEXT_SPECIALS, JointVocabulary

CLIP_SECONDS = 1.5
SIGNAL_WORDS = len(COLOURS) * len(ACTIONS)  # 36


def wordpiece_tokenizer(texts: list[str], vocab_size: int = 200):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(TEXT_SPECIALS)))
    return BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]")


def build_corpus(out: Path, videos: int = 48, seed: int = 0, visual_vocab_size: int = 48, signal: float = 0.8) -> JointVocabulary:
    """Write ``{train,val,test}.jsonl``, ``vocabulary.json`` and ``tokenizer/`` into ``out``."""
    plans = plan_corpus(SynthConfig(videos=videos, seed=seed))
    texts = [s.narration.text for p in plans for s in p.segments if s.narration is not None]
    vocab = JointVocabulary(wordpiece_tokenizer(texts), visual_vocab_size)
    colours, actions = list(COLOURS), list(ACTIONS)
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for plan in plans:
        rng = np.random.default_rng([seed, plan.index, 7])
        clips = int(math.ceil(plan.duration / CLIP_SECONDS))
        words = rng.integers(SIGNAL_WORDS, visual_vocab_size, size=clips)
        for segment in plan.segments:
            first, last = int(segment.start // CLIP_SECONDS), int(math.ceil(segment.end / CLIP_SECONDS))
            meaning = colours.index(segment.colour) * len(actions) + actions.index(segment.action)
            for clip in range(first, min(last, clips)):
                words[clip] = meaning if rng.random() < signal else rng.integers(visual_vocab_size)
        for index, segment in enumerate(plan.segments):
            cue = segment.narration
            start, end = (cue.start, cue.end) if cue else (segment.start, segment.end)
            first, last = int(start // CLIP_SECONDS), min(clips, int(math.ceil(end / CLIP_SECONDS)))
            splits[plan.split].append({
                "video_id": plan.video_id, "index": index, "start": start, "end": end,
                "text": cue.text if cue else "", "text_ids": vocab.encode_text(cue.text) if cue else [],
                "video_ids": [int(w) for w in words[first:last]], "first_clip": first,
            })
    out.mkdir(parents=True, exist_ok=True)
    for split, examples in splits.items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    vocab.save(out)
    return vocab
