"""Pretraining VideoBERT (the pretrain stage): text-only masked language modelling, masked visual
words and [CLS] text-video alignment.

``data`` (training sequences, masking, augmentation, batches), ``losses`` (the objectives,
validation), ``trainer`` (the optimiser step, DistributedDataParallel), ``stage`` (the model
folder: ``run``; ``package``: the folder made self-contained). The sequence format is
:mod:`videobert.inputs`; checkpoints and the schedule, shared with captioning, :mod:`videobert.training`.
"""

from videobert.pretrain.data import DataConfig, PretrainExamples, StepBatches
from videobert.pretrain.losses import LossWeights, pretraining_losses
from videobert.pretrain.stage import PretrainConfig, build_model, run
from videobert.pretrain.trainer import OptimConfig
from videobert.training import warmup_linear_decay

__all__ = [
    "DataConfig", "LossWeights", "OptimConfig", "PretrainConfig", "PretrainExamples", "StepBatches",
    "build_model", "pretraining_losses", "run", "warmup_linear_decay",
]
