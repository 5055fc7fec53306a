"""Pretraining VideoBERT (the pretrain stage): text-only masked language modelling, masked visual
words and [CLS] text-video alignment.

``data`` (sequences, masking, augmentation, batches), ``losses`` (the objectives, validation),
``trainer`` (the optimiser step, DistributedDataParallel), ``checkpoint`` (resumable checkpoints),
``stage`` (the RUN folder: ``run``).
"""

from videobert.pretrain.data import DataConfig, PretrainExamples, StepBatches, TokenLayout
from videobert.pretrain.losses import LossWeights, pretraining_losses
from videobert.pretrain.stage import PretrainConfig, build_model, run
from videobert.pretrain.trainer import OptimConfig, warmup_linear_decay

__all__ = [
    "DataConfig", "LossWeights", "OptimConfig", "PretrainConfig", "PretrainExamples", "StepBatches", "TokenLayout",
    "build_model", "pretraining_losses", "run", "warmup_linear_decay",
]
