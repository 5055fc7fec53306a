"""The pretraining objectives (paper §3.2), each switched off by a weight of 0 and logged on its own:

* ``text_mlm`` — masked WordPieces of text-only sequences;
* ``video_mlm`` — masked visual words of video-only sequences;
* ``video_text_mlm`` — masked tokens of both sides of aligned video-text sequences;
* ``align`` — the [CLS] classifier on aligned vs. misaligned video-text sequences (binary
  cross-entropy).

Every masked-token loss is the mean cross-entropy over that objective's targets in the
micro-batch; the loss is their weighted sum. :func:`validation_metrics` measures the same
objectives as accuracies on fixed validation batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from videobert.config import field
from videobert.errors import ConfigError
from videobert.pretrain.data import (
    GROUP_NAMES, GROUP_PAIR_TEXT, GROUP_PAIR_VIDEO, GROUP_TEXT, GROUP_VIDEO, PAIR, TEXT, VIDEO, to_device,
)
from videobert.runtime import autocast

LOSS_NAMES = ("text_mlm", "video_mlm", "video_text_mlm", "align")


@dataclass
class LossWeights:
    """The weight of each objective in the loss; an objective with weight 0 is off and its kind of
    sequence is not built (a section of the pretraining config)."""

    text_mlm: float = field(1.0, help="weight of text-only masked language modelling (0: off)")
    video_mlm: float = field(1.0, help="weight of video-only masked visual words (0: off)")
    video_text_mlm: float = field(1.0, help="weight of masked tokens in aligned video-text pairs (0: off)")
    align: float = field(1.0, help="weight of the [CLS] text-video alignment classifier (0: off)")

    def check(self) -> None:
        weights = [getattr(self, name) for name in LOSS_NAMES]
        if min(weights) < 0 or max(weights) == 0:
            raise ConfigError("text_mlm/video_mlm/video_text_mlm/align: weights must be >= 0 and one must be > 0")

    def kinds(self) -> tuple[int, ...]:
        """The sequence kinds the enabled objectives need (``TEXT``, ``VIDEO``, ``PAIR``)."""
        needed = ((TEXT, self.text_mlm), (VIDEO, self.video_mlm), (PAIR, self.video_text_mlm + self.align))
        return tuple(kind for kind, weight in needed if weight > 0)


def pretraining_losses(outputs, batch: dict[str, Any], weights: LossWeights) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted total and each objective's loss (detached) for one micro-batch from
    :func:`videobert.pretrain.data.collate_training`. Objectives absent from the batch count 0 but
    keep their parameters in the graph (DistributedDataParallel expects every gradient)."""
    per_target = F.cross_entropy(outputs.mlm_logits.float(), batch["mlm_labels"], reduction="none")
    sums = torch.zeros(len(GROUP_NAMES), device=per_target.device).index_add(0, batch["mlm_groups"], per_target)
    counts = batch["group_counts"]
    pair_targets = counts[GROUP_PAIR_TEXT] + counts[GROUP_PAIR_VIDEO]
    parts = {
        "text_mlm": sums[GROUP_TEXT] / max(counts[GROUP_TEXT], 1),
        "video_mlm": sums[GROUP_VIDEO] / max(counts[GROUP_VIDEO], 1),
        "video_text_mlm": (sums[GROUP_PAIR_TEXT] + sums[GROUP_PAIR_VIDEO]) / max(pair_targets, 1),
    }
    rows = batch["align_rows"]
    if rows.numel():
        parts["align"] = F.binary_cross_entropy_with_logits(outputs.align_logits.float()[rows], batch["align_labels"])
    else:
        parts["align"] = outputs.align_logits.sum() * 0.0
    total = sum(getattr(weights, name) * loss for name, loss in parts.items())
    if per_target.numel() == 0:
        total = total + outputs.mlm_logits.sum() * 0.0
    return total, {name: loss.detach() for name, loss in parts.items()}


@torch.no_grad()
def validation_metrics(model, batches: list[dict[str, Any]], device: torch.device, precision: str) -> dict[str, float]:
    """Masked-token accuracy per objective and modality, alignment accuracy, and losses, over the
    validation batches (summed over ranks)."""
    was_training = model.training
    model.eval()
    groups = len(GROUP_NAMES)
    # correct per group, targets per group, loss sum per group, align correct, align count, align loss sum
    totals = torch.zeros(3 * groups + 3, dtype=torch.float64, device=device)
    for batch in batches:
        batch = to_device(batch, device)
        with autocast(device, precision):
            out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["mlm_positions"])
        logits = out.mlm_logits.float()
        correct = (logits.argmax(-1) == batch["mlm_labels"]).double()
        loss = F.cross_entropy(logits, batch["mlm_labels"], reduction="none").double()
        totals[:groups] += torch.bincount(batch["mlm_groups"], weights=correct, minlength=groups)
        totals[groups : 2 * groups] += torch.bincount(batch["mlm_groups"], minlength=groups).double()
        totals[2 * groups : 3 * groups] += torch.bincount(batch["mlm_groups"], weights=loss, minlength=groups)
        align = out.align_logits.float()[batch["align_rows"]]
        totals[-3] += ((align > 0).float() == batch["align_labels"]).sum()
        totals[-2] += batch["align_rows"].numel()
        totals[-1] += F.binary_cross_entropy_with_logits(align, batch["align_labels"], reduction="sum")
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(totals)
    totals = totals.tolist()
    metrics: dict[str, float] = {}
    for g, name in enumerate(GROUP_NAMES):
        if totals[groups + g]:
            metrics[f"{name}_acc"] = totals[g] / totals[groups + g]
            metrics[f"{name}_loss"] = totals[2 * groups + g] / totals[groups + g]
    if totals[-2]:
        metrics["align_acc"] = totals[-3] / totals[-2]
        metrics["align_loss"] = totals[-1] / totals[-2]
    model.train(was_training)
    return metrics
