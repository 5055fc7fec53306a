"""The model card: ``README.md`` of a model folder, in the Hugging Face Hub's format.

YAML front matter (``library_name``, ``tags``, ``datasets`` when the corpus names one, and a
``model-index`` with the evaluation metrics once ``videobert evaluate`` has run), then the
training data, the settings, where the visual words' features come from, how to use the folder,
intended use and limitations. A model whose features came from a randomly initialised S3D says
so first. Pretrain writes the card; distil writes it again with the search section (the dual
encoder's figures on the val split, ``dual/dual.json``); evaluate records its metrics in
``evaluation.json`` and writes it again.

Everything in the card that comes from names and files (the folder's name, the corpus's, the
settings) is escaped for where it lands: Markdown text has its HTML and Markdown characters
escaped (:func:`md`), a code span cannot be closed from inside (:func:`code`), the usage line holds
the name as a Python string literal (:func:`python_literal`), and the front matter is YAML as
``yaml.safe_dump`` writes it — so a folder named ``<script>…`` shows as text and pasted code runs
only what the card means.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import yaml

from videobert.features.s3d import RANDOM_INIT
from videobert.logs import printable
from videobert.store import atomic_write_json, atomic_write_text, read_json

CARD = "README.md"
EVALUATION_FILE = "evaluation.json"
DATASETS = {"youcook2": "youcook2", "msrvtt": "msr_vtt", "howto100m": "howto100m"}  # Hub ids by corpus name


def _read(path: Path) -> dict[str, Any]:
    data = read_json(path, path.name) if path.is_file() else {}
    return data if isinstance(data, dict) else {}


def md(value: Any) -> str:
    """``value`` as Markdown text that renders as itself: one line (control characters escaped),
    Markdown's special characters backslash-escaped, HTML's as entities."""
    text = printable(value, newlines=False)
    return html.escape(re.sub(r"([\\`*_{}\[\]()#+!|~<>-])", r"\\\1", text), quote=False).replace("\\&lt;", "&lt;").replace(
        "\\&gt;", "&gt;")


def code(value: Any) -> str:
    """``value`` as a Markdown code span: one line, no backtick to close it early."""
    return "`" + printable(value, newlines=False).replace("`", "'") + "`"


def python_literal(value: Any) -> str:
    """``value`` as a Python string literal that stays one literal when pasted (and closes no
    Markdown fence)."""
    return repr(str(value)).replace("`", "\\x60")


def record_evaluation(model_dir: str | Path, metrics: dict[str, Any]) -> None:
    """Keep an evaluation's headline metrics in ``MODEL/evaluation.json`` (one entry per corpus, or
    benchmark, and split) and write the card again with them."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        return
    evaluations = _read(model_dir / EVALUATION_FILE)
    benchmark = (metrics.get("benchmark") or {}).get("benchmark")
    if metrics.get("corpus"):
        source = Path(str(metrics["corpus"])).name
    else:  # annotated segments (videobert prepare): the benchmark, or the DATA folder's name
        source = benchmark or Path(str(metrics.get("segments", "segments"))).parent.name
    key = f"{source}/{metrics.get('split', 'test')}"
    evaluations[key] = {
        "corpus": metrics.get("corpus"),
        **({"segments": metrics["segments"], "benchmark": benchmark} if metrics.get("segments") else {}),
        "split": metrics.get("split"),
        "gallery": metrics.get("gallery"),
        "queries": (metrics.get("queries") or {}).get("scoring", "every query"),
        **{direction: {k: metrics[direction][k] for k in ("r1", "r5", "r10", "median_rank", "chance_r1", "chance_r5",
                                                            "chance_r10")}
           for direction in ("t2v", "v2t") if direction in metrics},
        "align_accuracy": metrics.get("align_accuracy"),
        "zero_shot": {name: {k: z[k] for k in ("top1", "top5", "chance_top1", "prior_top1") if k in z}
                      for name, z in (metrics.get("zero_shot") or {}).items()},
    }
    atomic_write_json(model_dir / EVALUATION_FILE, evaluations)
    write_model_card(model_dir)


def _model_index(name: str, evaluations: dict[str, Any]) -> list[dict[str, Any]]:
    results = []
    for key, e in evaluations.items():
        dataset = {"name": f"{key.split('/')[0]} ({e.get('split')} split, gallery of {e.get('gallery')})", "type": "custom",
                   "split": e.get("split")}
        for direction, task, title in (("t2v", "text-to-video-retrieval", "Text-to-video retrieval"),
                                       ("v2t", "video-to-text-retrieval", "Video-to-text retrieval")):
            if direction not in e:
                continue
            metrics = [{"type": f"recall_at_{k}", "name": f"R@{k}", "value": round(float(e[direction][f"r{k}"]), 4)}
                       for k in (1, 5, 10)]
            metrics.append({"type": "median_rank", "name": "median rank", "value": float(e[direction]["median_rank"])})
            results.append({"task": {"type": task, "name": title}, "dataset": dataset, "metrics": metrics})
        zero = e.get("zero_shot") or {}
        if zero:
            results.append({"task": {"type": "zero-shot-classification", "name": "Zero-shot classification"},
                            "dataset": dataset,
                            "metrics": [{"type": "accuracy", "name": f"{attribute} top-1", "value": round(float(z["top1"]), 4)}
                                        for attribute, z in zero.items()]})
    return [{"name": name, "results": results}] if results else []


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_model_card(model_dir: str | Path) -> Path:
    """Write ``MODEL/README.md`` from what the folder holds (module docstring)."""
    model_dir = Path(model_dir)
    config = _read(model_dir / "config.json")
    summary = _read(model_dir / "summary.json")
    features = _read(model_dir / "features.json")
    vocabulary = _read(model_dir / "vocabulary.json")
    evaluations = _read(model_dir / EVALUATION_FILE)
    dual = _read(model_dir / "dual" / "dual.json")
    corpus = summary.get("corpus") or {}
    name = model_dir.absolute().name
    front: dict[str, Any] = {
        "library_name": "videobert",
        "tags": ["videobert", "video-text-retrieval", "video-language", "masked-language-modeling", "zero-shot"],
    }
    dataset = DATASETS.get(str(corpus.get("name", "")).lower())
    if dataset:
        front["datasets"] = [dataset]
    model_index = _model_index(name, evaluations)
    if model_index:
        front["model-index"] = model_index
    random_features = features.get("weights") == RANDOM_INIT
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=False).rstrip(), "---", "", f"# VideoBERT: {md(name)}", ""]
    if random_features:
        lines += ["> **Random-init S3D.** The visual words of this model come from a randomly initialised S3D "
                  f"(seed {md(features.get('init_seed', 0))}), not from Kinetics-400 weights: it is for testing the "
                  "pipeline and for the synthetic demo, not for research on real video.", ""]
    elif not features:
        lines += ["> **No feature settings.** This folder records no `features.json`: it scores visual words, but "
                  "cannot turn video files into them.", ""]
    lines += [
        "A joint BERT over text WordPieces and visual words (Sun et al., *VideoBERT: A Joint Model for Video and "
        "Language Representation Learning*, ICCV 2019), trained with the masked-text, masked-visual-word and "
        "text-video alignment objectives by the `videobert` pipeline.",
        "",
        "## How to use",
        "",
        "```python",
        "from videobert import VideoBERTPipeline",
        "",
        f"pipe = VideoBERTPipeline.from_pretrained({python_literal(name)}"
        + ("" if random_features or not features else ', s3d_weights="s3d-d76dad2f.pth"') + ")",
        'hits = pipe.search("how to fold the dough", top_k=5)      # this folder\'s own test segments',
        'words = pipe.visual_words("my_video.mp4")                  # decode -> S3D -> codebook',
        'pipe.score(["how to fold the dough"], ["my_video.mp4"])     # alignment probability',
        "```",
        "",
        "or `videobert index MODEL VIDEOS -o INDEX` then `videobert retrieve MODEL \"query\" --index INDEX`.",
        "",
        "## Training data",
        "",
    ]
    if corpus:
        splits = corpus.get("splits") or {}
        lines += [f"- corpus: {code(corpus.get('folder', '?'))} — {md(corpus.get('examples', '?'))} examples from "
                  f"{md(corpus.get('videos', '?'))} videos (train {md(splits.get('train', '?'))}, val "
                  f"{md(splits.get('val', '?'))}, test {md(splits.get('test', '?'))} examples)",
                  f"- WordPiece: {md(corpus.get('tokenizer', '?'))}, {md(vocabulary.get('text_vocab_size', '?'))} pieces"]
    else:
        lines += ["- not recorded"]
    lines += ["", "## Settings", ""]
    if config:
        lines.append(f"- network: {md(config.get('layers'))} layers, {md(config.get('hidden_size'))} hidden units, "
                     f"{md(config.get('heads'))} heads, joint vocabulary {md(vocabulary.get('size', '?'))} = "
                     f"{md(config.get('text_vocab_size'))} text + [>] + {md(config.get('visual_vocab_size'))} visual words")
    if summary:
        lines.append(f"- training: {md(summary.get('steps'))} steps on {md(summary.get('world_size', 1))} process(es), "
                     f"{md(summary.get('device'))} {md(summary.get('precision'))}; settings in `config.yaml`")
        val = summary.get("val") if isinstance(summary.get("val"), dict) else {}
        if val:
            lines.append("- last validation: " + ", ".join(f"{md(k)} {v:.3f}" for k, v in val.items()
                                                          if str(k).endswith("_acc") and _is_number(v)))
    lines += ["", "## Feature provenance", ""]
    if features:
        weights = features.get("weights")
        lines += [f"- backbone: {md(features.get('model'))}; weights: "
                  + ("random init" if weights == RANDOM_INIT else f"sha256 {code(weights)}"),
                  f"- clips: {md(features.get('clip_frames'))} frames at {md(features.get('fps'))} fps "
                  f"({md(features.get('clip_seconds'))} s), {md(features.get('size'))} px, precision "
                  f"{md(features.get('precision'))}",
                  f"- visual vocabulary: `visual_vocab/codebook.npz`, codebook hash {code(vocabulary.get('codebook'))}"]
    else:
        lines += ["- not recorded"]
    if dual.get("dual"):
        chosen = (dual.get("two_stage") or {}).get(str(dual.get("k"))) or {}
        lines += ["", "## Search", "",
                  f"Two-stage search: a dual encoder distilled from this model (`dual/`) gives every segment a vector; "
                  f"a query's first stage keeps the K = {md(dual.get('k'))} nearest (chosen on the {md(dual.get('split'))} "
                  f"split: {md(dual.get('k_rule', ''))}), and this model re-ranks them.", "",
                  f"| {md(dual.get('split'))} split, gallery of {md(dual.get('gallery'))} | t→v R@1 | R@5 | R@10 |",
                  "| --- | --- | --- | --- |"]
        rows = [("dual encoder alone", dual["dual"]["t2v"]), (f"two-stage, K = {md(dual.get('k'))}", chosen.get("t2v") or {}),
                ("cross-encoder, every segment", (dual.get("exhaustive") or {}).get("t2v") or {}),
                ("chance", {f"r{k}": dual["dual"]["t2v"].get(f"chance_r{k}", 0) for k in (1, 5, 10)})]
        lines += [f"| {name} | {m.get('r1', 0):.3f} | {m.get('r5', 0):.3f} | {m.get('r10', 0):.3f} |" for name, m in rows]
    if evaluations:
        lines += ["", "## Evaluation", "", "| corpus / split | gallery | t→v R@1 | R@5 | R@10 | chance R@5 | alignment |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for key, e in evaluations.items():
            e = e if isinstance(e, dict) else {}
            t2v = e.get("t2v") if isinstance(e.get("t2v"), dict) else {}
            figures = [t2v.get(k, 0) for k in ("r1", "r5", "r10", "chance_r5")] + [e.get("align_accuracy") or 0]
            lines.append(f"| {md(key)} | {md(e.get('gallery'))} | "
                         + " | ".join(f"{v:.3f}" if _is_number(v) else "?" for v in figures) + " |")
    lines += [
        "", "## Intended use", "",
        "Text-to-video and video-to-text retrieval, zero-shot classification with a masked template, and "
        "text-to-video generation of visual words, on videos like the training corpus's.", "",
        "## Limitations", "",
        "- The model knows only the WordPieces and visual words of its vocabulary; a video's words depend on "
        "decoding and S3D exactly as `features.json` records them.",
        "- Retrieval figures are over the gallery named beside them; they are not comparable with published "
        "numbers on other galleries or corpora.",
        "- Biases of the training videos and their speech carry over.",
        "",
    ]
    path = model_dir / CARD
    atomic_write_text(path, "\n".join(lines))
    return path
