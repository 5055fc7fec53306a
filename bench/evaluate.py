"""Retrieval scoring speed: batched cross-encoder scoring against one pair per forward pass, the
share spent building inputs, and two-stage search against exhaustive scoring.

    python bench/evaluate.py [--preset tiny] [--gallery 300] [--device auto]
    python bench/evaluate.py --run RUN --corpus CORPUS [--split test] [--two-stage 10]

Without ``--run`` the model is randomly initialised (``--preset``) and the gallery is random
sentences of 8-16 WordPieces with 2-6 visual words each (synthetic-corpus sizes), so only the
speed figures mean something. With ``--run`` the gallery is the split's text-video examples and
the two-stage recall is reported beside exhaustive scoring. Figures: pairs per second of
``score_matrix`` (length-sorted batches of ``--batch-tokens``, bf16 autocast on GPU), of the
baseline scoring one unpadded pair per forward pass (on a sample of pairs), and of building the
inputs alone (``build_input`` + padding, no model).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videobert.model import ModelConfig, VideoBERT  # noqa: E402
from videobert.inputs import TokenLayout, build_input, collate_inputs  # noqa: E402
from videobert.retrieval.gallery import text_video_examples  # noqa: E402
from videobert.inference import LoadedModel, default_batch_tokens, length_batches, load_model  # noqa: E402
from videobert.retrieval.metrics import metrics_from_counts, true_match_counts  # noqa: E402
from videobert.retrieval.scoring import score_matrix  # noqa: E402
from videobert.retrieval.two_stage import two_stage_search  # noqa: E402
from videobert.runtime import autocast, cpu_name, resolve_device, resolve_precision  # noqa: E402


def random_setup(args) -> tuple[LoadedModel, list, list]:
    text_vocab, visual_vocab = 30522, 20736  # BERT's WordPieces, the paper's 12^4 visual words
    layout = TokenLayout(text_vocab, visual_vocab, pad_id=0, cls_id=101, sep_id=102, mask_id=103,
                         text_special_ids=(0, 100, 101, 102, 103))
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    model = VideoBERT(ModelConfig.preset(args.preset, text_vocab, visual_vocab)).to(device).eval()
    loaded = LoadedModel(model, None, layout, device, precision, 256, args.batch_tokens or default_batch_tokens(device))
    rng = np.random.default_rng(0)
    texts = [list(rng.integers(1000, text_vocab, size=rng.integers(8, 17))) for _ in range(args.gallery)]
    videos = [list(rng.integers(0, visual_vocab, size=rng.integers(2, 7))) for _ in range(args.gallery)]
    return loaded, texts, videos


def run_setup(args) -> tuple[LoadedModel, list, list]:
    loaded = load_model(args.run, args.device, args.precision, args.batch_tokens)
    examples = text_video_examples(args.corpus, args.split)[: args.gallery or None]
    return loaded, [e["text_ids"] for e in examples], [e["video_ids"] for e in examples]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def one_pair_at_a_time(loaded: LoadedModel, texts, videos, pairs: np.ndarray) -> float:
    """Seconds to score ``pairs`` with one unpadded sequence per forward pass."""
    synchronize(loaded.device)
    began = time.perf_counter()
    empty = torch.empty(0, dtype=torch.long, device=loaded.device)
    for t, v in pairs:
        sequence = build_input(loaded.layout, texts[t], videos[v], loaded.max_len)
        ids = torch.from_numpy(sequence["input_ids"])[None].to(loaded.device)
        types = torch.from_numpy(sequence["token_type_ids"])[None].to(loaded.device)
        with autocast(loaded.device, loaded.precision):
            loaded.model(ids, types, None, empty)
    synchronize(loaded.device)
    return time.perf_counter() - began


def building_only(loaded: LoadedModel, texts, videos) -> float:
    """Seconds to build and pad every pair's input, no model."""
    n_text, n_video = len(texts), len(videos)
    lengths = np.array([[len(t) + len(v) + 3 for v in videos] for t in texts]).reshape(-1)
    began = time.perf_counter()
    for rows in length_batches(lengths, loaded.batch_tokens):
        t_index, v_index = np.divmod(rows, n_video)
        collate_inputs([build_input(loaded.layout, texts[t], videos[v], loaded.max_len) for t, v in zip(t_index, v_index)],
                       loaded.layout.pad_id)
    del n_text
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "base", "large"])
    parser.add_argument("--gallery", type=int, default=300, help="gallery size N (N² pairs); with --run: at most N examples")
    parser.add_argument("--run", type=Path)
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--two-stage", type=int, default=10, help="K of the two-stage search")
    parser.add_argument("--baseline-pairs", type=int, default=300, help="pairs scored one at a time for the baseline")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-tokens", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded, texts, videos = run_setup(args) if args.run else random_setup(args)
    n = len(texts)
    device = loaded.device
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()}, {torch.get_num_threads()} threads"
    config = loaded.model.config
    print(f"device: {device} ({where}), precision {loaded.precision}, torch {torch.__version__}")
    print(f"model: {'run ' + str(args.run) if args.run else args.preset + ' (random init)'}: hidden {config.hidden_size}, "
          f"{config.layers} layers, vocabulary {config.vocab_size}")
    print(f"gallery: {n} text-video pairs, mean sequence {np.mean([len(t) for t in texts]) + np.mean([len(v) for v in videos]) + 3:.1f} "
          f"tokens; batches of <= {loaded.batch_tokens} tokens")

    score_matrix(loaded, texts[:8], videos[:8])  # warm-up (kernels, allocator)
    synchronize(device)
    began = time.perf_counter()
    scores = score_matrix(loaded, texts, videos)
    synchronize(device)
    exhaustive = time.perf_counter() - began
    rng = np.random.default_rng(1)
    sample = rng.integers(0, n, size=(min(args.baseline_pairs, n * n), 2))
    single = one_pair_at_a_time(loaded, texts, videos, sample)
    building = building_only(loaded, texts, videos)
    print(f"\n{'scoring':<44}{'pairs':>10}{'seconds':>10}{'pairs/s':>12}")
    print(f"{'batched score_matrix (exhaustive)':<44}{n * n:>10}{exhaustive:>10.2f}{n * n / exhaustive:>12.0f}")
    print(f"{'baseline: one unpadded pair per forward':<44}{len(sample):>10}{single:>10.2f}{len(sample) / single:>12.0f}")
    print(f"{'building inputs only (no model)':<44}{n * n:>10}{building:>10.2f}{n * n / building:>12.0f}")

    began = time.perf_counter()
    result = two_stage_search(loaded, texts, videos, args.two_stage)
    synchronize(device)
    two_stage = time.perf_counter() - began
    print(f"{f'two-stage K={args.two_stage} (both directions)':<44}{result.pairs_scored:>10}{two_stage:>10.2f}"
          f"{'':>12}   vs exhaustive {exhaustive:.2f} s")
    if args.run:
        full = {"t2v": metrics_from_counts(*true_match_counts(scores)), "v2t": metrics_from_counts(*true_match_counts(scores.T))}
        print(f"\n{'recall':<24}{'R@1':>8}{'R@5':>8}{'R@10':>8}   first stage keeps the true item")
        for direction in ("t2v", "v2t"):
            staged = metrics_from_counts(*getattr(result, direction))
            print(f"{direction + ' exhaustive':<24}" + "".join(f"{full[direction][f'r{k}']:>8.3f}" for k in (1, 5, 10)))
            print(f"{direction + f' two-stage K={args.two_stage}':<24}" + "".join(f"{staged[f'r{k}']:>8.3f}" for k in (1, 5, 10))
                  + f"   {result.first_stage_recall[direction]:.1%}")


if __name__ == "__main__":
    main()
