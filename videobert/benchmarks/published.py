"""Published figures on the benchmarks (``published.yaml``: model, setting, figures, source per
line) and our metrics printed beside them, with what differs between the two."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videobert.features.s3d import RANDOM_INIT
from videobert.readers import read_yaml

PUBLISHED = Path(__file__).with_name("published.yaml")


def published(benchmark: str) -> dict[str, list[dict[str, Any]]]:
    """The published lines of a benchmark (``youcook2``, ``msrvtt-1k-a``), by kind
    (``retrieval``, ``zero_shot``); empty for another benchmark."""
    data = read_yaml(PUBLISHED, "published figures")
    return data.get(benchmark, {})


def differences(metrics: dict[str, Any], benchmark: dict[str, Any], features: dict[str, Any] | None) -> list[str]:
    """What makes our figures not directly comparable with the published ones, in words."""
    notes = []
    if features is None or features.get("weights") == RANDOM_INIT:
        notes.append("our S3D is randomly initialised, not Kinetics-400: the visual words carry no learnt features "
                     "(figures near chance are expected)" if features is not None else
                     "the model records no feature provenance (features.json)")
    notes.append("our weights and training corpus are this run's, not the paper's (312 k cooking videos, BERT-large "
                 "initialisation)")
    expected = benchmark.get("published_gallery")
    gallery = metrics.get("gallery")
    if expected:
        notes.append(f"gallery: {gallery} segments here against {expected} in the papers"
                     + (f" ({missing} of the annotated videos {'was' if missing == 1 else 'were'} missing or unreadable)"
                        if (missing := benchmark.get("missing_videos")) else ""))
    for attribute, zero in (metrics.get("zero_shot") or {}).items():
        classes = zero.get("classes", 0) + len(zero.get("left_out_classes", []))
        if "left_out_segments" in zero:
            notes.append(f"zero-shot {attribute}: {len(zero['left_out_classes'])} of {classes} classes and "
                         f"{zero['left_out_segments']} of {zero['labelled_segments']} labelled segments left out, their "
                         "label not one WordPiece of this model's vocabulary (one [MASK] predicts one piece)")
    if (metrics.get("queries") or {}).get("scoring") == "seeded query sample":
        notes.append(f"ranked on a seeded sample of {metrics['queries']['ranked']} queries")
    return notes


def comparison(metrics: dict[str, Any], benchmark: dict[str, Any], features: dict[str, Any] | None) -> str:
    """Our figures beside the published ones (percent), then what differs."""
    lines = published(benchmark.get("benchmark", ""))
    if not lines:
        return ""
    out = [f"beside published figures on {benchmark.get('title', benchmark.get('benchmark'))} (percent):", ""]
    ours_t2v = metrics.get("t2v") or {}
    if lines.get("retrieval") and ours_t2v:
        out.append(f"{'text → video':<44}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'MedR':>7}")
        out.append(f"{'ours (this model)':<44}{100 * ours_t2v['r1']:>7.1f}{100 * ours_t2v['r5']:>7.1f}"
                   f"{100 * ours_t2v['r10']:>7.1f}{ours_t2v['median_rank']:>7.1f}")
        out.append(f"{'chance':<44}{100 * ours_t2v['chance_r1']:>7.1f}{100 * ours_t2v['chance_r5']:>7.1f}"
                   f"{100 * ours_t2v['chance_r10']:>7.1f}{ours_t2v['chance_median_rank']:>7.1f}")
        for line in lines["retrieval"]:
            t2v = line["t2v"]
            cells = "".join(f"{t2v[k]:>7.1f}" if k in t2v else f"{'—':>7}" for k in ("r1", "r5", "r10", "median_rank"))
            out.append(f"{line['model'] + ', ' + line['setting'].split(',')[0]:<44}{cells}")
        out.append("")
    zero = metrics.get("zero_shot") or {}
    if lines.get("zero_shot") and zero:
        out.append(f"{'zero-shot':<44}{'verb@1':>8}{'verb@5':>8}{'obj@1':>8}{'obj@5':>8}")

        def cells(prefix: str) -> str:
            return "".join(f"{100 * zero[a][prefix + k]:>8.1f}" if a in zero else f"{'—':>8}"
                           for a in ("verb", "object") for k in ("top1", "top5"))

        out.append(f"{'ours (this model)':<44}{cells('')}")
        out.append(f"{'ours, text-only prior':<44}{cells('prior_')}")
        for line in lines["zero_shot"]:
            out.append(f"{line['model']:<44}" + "".join(f"{line[a][k]:>8.1f}" for a in ("verb", "object") for k in ("top1", "top5")))
        out.append("")
    out.append("what differs: " + "; ".join(differences(metrics, benchmark, features)))
    out.append("sources: " + "; ".join(sorted({line["source"] for kind in lines.values() for line in kind})))
    return "\n".join(out)
