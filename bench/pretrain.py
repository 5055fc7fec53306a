"""Pretraining throughput: VideoBERT against Hugging Face ``BertForPreTraining`` of the same size.

    python bench/pretrain.py                       # GPU: base and large, batch 128 × 256 tokens
    python bench/pretrain.py --presets tiny base   # CPU: smaller batch and sequence by default

Both models run the same training step in the same process — forward, masked-token loss on 15 %
of the positions plus the sentence-level (alignment / next-sentence) loss, backward, gradient
clipping, AdamW (fused on GPU) — on random ids over the paper's joint vocabulary (30 522
WordPieces + [>] + 20 736 visual words), bf16 autocast on GPU (fp32 on CPU), no padding. The
baseline uses ``attn_implementation="sdpa"``.

``--padded``: rows of random length 4 … seq instead (the first full; the share of real positions
is printed — the demo's length-bucketed batches are 43 % real), both models given the attention
mask; tokens/s then counts the real tokens only. VideoBERT runs everything but attention
on the real tokens; the baseline computes every position.

Model FLOPs per token (same formula for both): 6·N + 12·layers·hidden·seq, N the weights of the
matrix multiplies (encoder, pooler, masked-token transform, output projection onto the
vocabulary; see ``videobert.model.flops_per_token``). MFU = FLOPs/token × tokens/s ÷ the GPU's
dense bf16 peak. VideoBERT projects only the masked positions onto the vocabulary, so it does
less arithmetic than the formula counts; the formula is what both are credited with.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from videobert.model import ModelConfig, VideoBERT, flops_per_token
from videobert.runtime import autocast, resolve_device, resolve_precision

TEXT_VOCAB, VISUAL_VOCAB = 30522, 20736
# Dense bf16 tensor-core peaks (FLOP/s) by device name.
PEAKS = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def gpu_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAKS.items():
        if key in name:
            return name, peak
    return name, None


def make_batch(batch: int, seq: int, vocab: int, device: torch.device, seed: int = 0, padded: bool = False) -> dict:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab, (batch, seq), generator=generator)
    token_types = (torch.arange(seq) >= seq // 2).long().expand(batch, seq).contiguous()
    real = torch.ones(batch, seq, dtype=torch.bool)
    if padded:  # the first row full, the others 4 … seq tokens; padding is id 0
        lengths = torch.randint(4, seq + 1, (batch,), generator=generator)
        lengths[0] = seq
        real = torch.arange(seq)[None] < lengths[:, None]
        input_ids = input_ids.masked_fill(~real, 0)
    masked = (torch.rand(batch, seq, generator=generator) < 0.15) & real
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
    return {
        "input_ids": input_ids.to(device),
        "token_type_ids": token_types.to(device),
        "attention_mask": real.long().to(device),
        "padded": padded,
        "labels": labels.to(device),
        "positions": masked.reshape(-1).nonzero().squeeze(1).to(device),
        "targets": input_ids.reshape(-1)[masked.reshape(-1)].to(device),
        "aligned": (torch.rand(batch, generator=generator) < 0.5).to(device),
    }


def videobert_step(model, batch):
    mask = batch["attention_mask"] if batch["padded"] else None
    out = model(batch["input_ids"], batch["token_type_ids"], mask, batch["positions"])
    return F.cross_entropy(out.mlm_logits.float(), batch["targets"]) + F.binary_cross_entropy_with_logits(
        out.align_logits.float(), batch["aligned"].float())


def hf_step(model, batch):
    out = model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                attention_mask=batch["attention_mask"], labels=batch["labels"],
                next_sentence_label=(~batch["aligned"]).long())
    return out.loss


def measure(model, step_fn, batch, device, precision, steps: int, warmup: int) -> dict:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    model.train()

    def one_step():
        with autocast(device, precision):
            loss = step_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - began) / steps
    tokens = int(batch["attention_mask"].sum())  # real tokens
    memory = f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}" if device.type == "cuda" else "n/a"
    return {"step_s": seconds, "tokens_per_s": tokens / seconds, "peak_gib": memory}


def hf_model(config: ModelConfig):
    from transformers import BertConfig, BertForPreTraining

    hf_config = BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.layers,
        num_attention_heads=config.heads, intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_positions, attn_implementation="sdpa",
    )
    return BertForPreTraining(hf_config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=None, help="default: base large on GPU, tiny base on CPU")
    parser.add_argument("--batch", type=int, default=None, help="default: 128 on GPU, 8 on CPU")
    parser.add_argument("--seq", type=int, default=None, help="default: 256 on GPU, 128 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on GPU, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd VideoBERT")
    parser.add_argument("--padded", action="store_true",
                        help="rows of random length 4 … seq (tokens/s counts real tokens)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    precision = resolve_precision("auto", device)
    gpu = device.type == "cuda"
    presets = args.presets or (["base", "large"] if gpu else ["tiny", "base"])
    batch_size, seq = args.batch or (128 if gpu else 8), args.seq or (256 if gpu else 128)
    steps = args.steps or (20 if gpu else 3)
    name, peak = gpu_peak(device)
    print(f"device: {name} ({device}), precision {precision}, torch {torch.__version__}")
    shape = "rows of 4 … " if args.padded else ""
    print(f"batch {batch_size} x {shape}{seq} tokens, joint vocabulary {TEXT_VOCAB + 1 + VISUAL_VOCAB}, "
          f"{steps} timed steps after {args.warmup} warm-up steps")
    if peak:
        print(f"MFU against a dense bf16 peak of {peak / 1e12:.0f} TFLOP/s")
    print(f"{'model':<34} {'params':>8} {'tokens/s':>11} {'step ms':>9} {'MFU':>7} {'peak GiB':>9} {'vs HF':>7}")
    for preset in presets:
        config = ModelConfig.preset(preset, TEXT_VOCAB, VISUAL_VOCAB)
        batch = make_batch(batch_size, seq, config.vocab_size, device, padded=args.padded)
        if args.padded:
            real = int(batch["attention_mask"].sum())
            print(f"{preset}: {real} of {batch_size * seq} positions real ({real / (batch_size * seq):.0%})")
        per_token = flops_per_token(config, seq)
        rows = []
        torch.manual_seed(0)
        rows.append((f"HF BertForPreTraining {preset} (sdpa)", hf_model(config).to(device), hf_step))
        rows.append((f"VideoBERT {preset}", VideoBERT(config).to(device), videobert_step))
        if args.compile:
            rows.append((f"VideoBERT {preset} (compiled)", torch.compile(VideoBERT(config).to(device), dynamic=True), videobert_step))
        baseline = None
        for label, model, step_fn in rows:
            result = measure(model, step_fn, batch, device, precision, steps, args.warmup)
            baseline = baseline or result["tokens_per_s"]
            mfu = f"{per_token * result['tokens_per_s'] / peak:.1%}" if peak else "n/a"
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"{label:<34} {params:>7.0f}M {result['tokens_per_s']:>11,.0f} {result['step_s'] * 1e3:>9.1f} "
                  f"{mfu:>7} {result['peak_gib']:>9} {result['tokens_per_s'] / baseline:>6.2f}x")
            del model
            if gpu:
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
