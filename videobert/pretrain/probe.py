"""How long a pretraining step takes on this device, measured in a few steps before a run.

:func:`measure_step` builds the model a pretraining config asks for (its preset and sizes, for a
text and a visual vocabulary of the given sizes), makes batches from made-up sentences of typical
length (16 WordPieces beside 10 visual words, the paper's objectives and augmentation as
configured) and times optimiser steps after a warm-up. A model of more than 10 M parameters on a
CPU steps a micro-batch of 8 sequences and the time is scaled by the batch size (such a step's
time grows in proportion to its sequences; a small model's is mostly fixed overhead, so it steps
the whole batch, as does a GPU). Nothing is read or written: the plan of
``videobert run`` and ``videobert plan`` calls it before any stage runs.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from typing import Any

import numpy as np
import torch

from videobert.inputs import TokenLayout, pad_multiple
from videobert.pretrain.data import PretrainExamples, StepBatches
from videobert.pretrain.stage import PretrainConfig, build_model
from videobert.pretrain.trainer import Trainer
from videobert.runtime import resolve_device, resolve_precision
from videobert.threads import restore_threads, training_threads

CPU_PROBE_BATCH = 8
SMALL_MODEL = 10_000_000  # parameters: below, a CPU step is timed on the whole batch
SENTENCE_WORDPIECES, SENTENCE_CLIPS = 16, 10


def _examples(layout: TokenLayout, count: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    first_text = max(layout.text_special_ids) + 1
    examples = []
    for index in range(count):
        clips = SENTENCE_CLIPS
        examples.append({
            "video_id": f"v{index // 4}", "index": index % 4, "start": 15.0 * (index % 4), "end": 15.0 * (index % 4) + 15,
            "text": "a sentence", "first_clip": clips * (index % 4),
            "text_ids": rng.integers(first_text, layout.text_vocab_size, SENTENCE_WORDPIECES).tolist(),
            "video_ids": rng.integers(0, layout.visual_vocab_size, clips).tolist(),
        })
    return examples


def measure_step(cfg: PretrainConfig, text_vocab_size: int, visual_vocab_size: int, warmup: int = 2, steps: int = 3,
                 budget_seconds: float = 20.0) -> dict[str, Any]:
    """Seconds per optimiser step of ``cfg`` on its device (module docstring): ``step_seconds``,
    ``measured_batch`` (the sequences a measured step held), ``parameters``, ``device``,
    ``precision``, ``peak_bytes`` (the GPU's peak allocation, or the growth of this process's
    peak resident memory while measuring, on the CPU). Stops early once ``budget_seconds`` are
    spent (always at least one timed step)."""
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    specials = (0, 1, 2, 3, 4)  # [PAD] [UNK] [CLS] [SEP] [MASK], as a trained WordPiece numbers them
    layout = TokenLayout(max(text_vocab_size, len(specials) + 1), max(1, visual_vocab_size), 0, 2, 3, 4, specials)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch_state = torch.random.get_rng_state()
    threads_before = None
    try:
        model = build_model(dataclasses.replace(cfg, init="scratch"), layout).to(device)
        threads_before = training_threads(model.config.hidden_size, device)  # as pretraining runs it
        parameters = sum(p.numel() for p in model.parameters())
        batch = cfg.batch_size
        if device.type == "cpu" and parameters > SMALL_MODEL:
            batch = min(batch, CPU_PROBE_BATCH)
        probe_cfg = dataclasses.replace(cfg, batch_size=batch, grad_accum=1, init="scratch", compile=False)
        trainer = Trainer(model, optim=probe_cfg, weights=probe_cfg, device=device, precision=precision, compile=False)
        examples = PretrainExamples(_examples(layout, max(64, 4 * batch), cfg.seed), layout, probe_cfg, probe_cfg.kinds(),
                                    pad_multiple(device))
        batches = StepBatches(examples, batch, 1, cfg.seed, 0, 1)
        model.train()
        began, timed = time.perf_counter(), []
        for step in range(warmup + steps):
            started = time.perf_counter()
            trainer.step(batches[step])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= warmup:
                timed.append(time.perf_counter() - started)
                if time.perf_counter() - began > budget_seconds:
                    break
            elif time.perf_counter() - began > budget_seconds:  # a slow device: one timed step is enough
                warmup = step + 1
        seconds = float(np.median(timed)) * cfg.batch_size / batch
        peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                else max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before))
    finally:
        restore_threads(threads_before)
        torch.random.set_rng_state(torch_state)
        model = trainer = examples = batches = None  # the plan goes on to run: give the probe's memory back
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"step_seconds": seconds, "measured_batch": batch, "parameters": parameters, "device": str(device),
            "precision": precision, "peak_bytes": int(peak)}
