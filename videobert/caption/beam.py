"""Beam search over a captioner's decoder, a batch of segments at a time.

Each segment keeps ``beam`` hypotheses; at every step each is extended by every WordPiece (the
special tokens other than ``[SEP]`` never), the best ``beam`` continuations are kept, and a
hypothesis that ends with ``[SEP]`` is set aside as finished. The best finished hypothesis wins by
its log-probability divided by the GNMT length penalty ``((5 + length) / 6) ** alpha`` (alpha 0:
plain log-probability, which favours short captions).
"""

from __future__ import annotations

from typing import Sequence

import torch

from videobert.caption.model import Captioner


@torch.no_grad()
def beam_search(model: Captioner, features: torch.Tensor, beam: int = 5, alpha: float = 0.6,
                banned: Sequence[int] = ()) -> list[list[int]]:
    """Caption ids (without ``[CLS]``/``[SEP]``) for each row of ``features`` [B, D]."""
    config = model.config
    device = features.device
    batch = features.shape[0]
    memory = model.encode(features).repeat_interleave(beam, dim=0)  # [B·K, parts, H]
    prefix = torch.full((batch * beam, 1), config.bos_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch, beam, device=device)
    scores[:, 1:] = float("-inf")  # the K beams start identical: keep one
    blocked = torch.zeros(config.vocab_size, dtype=torch.bool, device=device)
    blocked[[config.bos_id, config.pad_id, *banned]] = True
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    for step in range(1, config.max_len):
        logits = model.decode(memory, prefix)[:, -1].float()
        logprobs = torch.log_softmax(logits, dim=-1).masked_fill(blocked, float("-inf"))
        if step == config.max_len - 1:  # the last place can only end the caption
            forced = torch.full_like(logprobs, float("-inf"))
            forced[:, config.eos_id] = logprobs[:, config.eos_id]
            logprobs = forced
        total = (scores.reshape(-1, 1) + logprobs).reshape(batch, -1)  # [B, K·vocab]
        best, index = total.topk(2 * beam, dim=-1)
        origin, token = index // config.vocab_size, index % config.vocab_size
        next_rows, next_tokens, next_scores = [], [], []
        for b in range(batch):
            kept = 0
            for score, k, t in zip(best[b].tolist(), origin[b].tolist(), token[b].tolist()):
                if score == float("-inf"):
                    break
                row = b * beam + k
                if t == config.eos_id:
                    words = prefix[row, 1:].tolist()
                    finished[b].append((score / (((5 + len(words) + 1) / 6) ** alpha), words))
                    continue
                if kept < beam:
                    next_rows.append(row)
                    next_tokens.append(t)
                    next_scores.append(score)
                    kept += 1
            while kept < beam:  # fewer live continuations than beams: pad with dead ones
                next_rows.append(b * beam)
                next_tokens.append(config.eos_id)
                next_scores.append(float("-inf"))
                kept += 1
        done = all(len(f) >= beam and max(s for s, _ in f) >= _best_possible(next_scores[b * beam : (b + 1) * beam],
                                                                            alpha, config.max_len)
                   for b, f in enumerate(finished))
        if done:
            break
        rows = torch.tensor(next_rows, device=device)
        prefix = torch.cat([prefix[rows], torch.tensor(next_tokens, device=device)[:, None]], dim=1)
        scores = torch.tensor(next_scores, device=device).reshape(batch, beam)
    return [max(f, key=lambda item: item[0])[1] if f else [] for f in finished]


def _best_possible(live_scores: Sequence[float], alpha: float, max_len: int) -> float:
    """An upper bound on what a live hypothesis can still reach: log-probabilities only fall, and
    the length penalty divides by at most ``((5 + max_len) / 6) ** alpha``."""
    best = max(live_scores, default=float("-inf"))
    if best == float("-inf"):
        return best
    return best / (((5 + max_len) / 6) ** alpha) if alpha > 0 else best
