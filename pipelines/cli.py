"""The ``videobert`` command: dispatches ``videobert <stage> ...`` to ``pipelines.<stage>.main``."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Sequence

from videobert import __version__

# command -> (module, one-line description): the whole pipeline first, then its stages in order.
STAGES: dict[str, tuple[str, str]] = {
    "demo": ("pipelines.demo", "generate the synthetic corpus and run every stage on it on CPU, then print the metrics"),
    "run": ("pipelines.run", "run the stages of a run config in order into one run folder, skipping what is up to date"),
    "plan": ("pipelines.plan", "what a run config will make of its videos and how long pretraining takes here, before running"),
    "synth": ("pipelines.synth", "generate the synthetic narrated-video corpus"),
    "prepare": ("pipelines.prepare", "YouCook II or MSR-VTT as distributed -> manifest, segments, zero-shot labels"),
    "extract": ("pipelines.extract", "S3D features of 1.5 s clips of every video (GPU, torchrun-sharded, resumable)"),
    "vocab": ("pipelines.vocab", "hierarchical k-means visual vocabulary over clip features"),
    "tokenize": ("pipelines.tokenize", "every clip -> its visual word"),
    "asr": ("pipelines.asr", "transcribe speech (pocketsphinx or whisper) into WebVTT with word timings"),
    "corpus": ("pipelines.corpus", "align transcript sentences with visual words into train/val/test examples"),
    "pretrain": ("pipelines.pretrain", "train VideoBERT: masked text, masked visual words, text-video alignment"),
    "distil": ("pipelines.distil", "a dual encoder for fast search, distilled from a model (MODEL/dual, MODEL/test_index)"),
    "evaluate": ("pipelines.evaluate", "retrieval R@k, alignment accuracy and zero-shot classification of a run"),
    "embed": ("pipelines.embed", "VideoBERT features of annotated segments (the paper's template), with their mean S3D feature"),
    "caption": ("pipelines.caption", "train, evaluate and run a captioner on segment features (COCO caption metrics)"),
    "forecast": ("pipelines.forecast", "predict the next visual words of a video; next-word accuracy beside unigram, bigram and repeat"),
    "index": ("pipelines.index", "segments of any videos, searchable with a model (faiss; grows by adding videos; resumable, sharded)"),
    "retrieve": ("pipelines.retrieve", "search a model's test segments, an index or a corpus with a sentence"),
    "serve": ("pipelines.serve", "search in a browser: hit cards with filmstrips, the matched seconds played, a JSON API"),
    "prune": ("pipelines.prune", "delete the earlier outputs a run folder keeps in RUN/.previous"),
}


def usage() -> str:
    width = max(map(len, STAGES))
    lines = [
        f"usage: videobert [--version] <stage> [options]   (videobert {__version__})",
        "",
        "VideoBERT pipeline: videos and speech -> S3D clip features -> visual words -> joint BERT -> retrieval.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {description}" for name, (_, description) in STAGES.items()]
    lines += ["", "Run 'videobert <stage> --help' for a stage's options."]
    return "\n".join(lines)


# ``videobert <command> --help`` prints pipelines/help/<command>.txt, written from the command's
# parser (``python -m pipelines.cli --write-help``; tests/test_cli.py checks each is current), so
# that help comes at once instead of after the seconds torch takes to import.
HELP_DIR = Path(__file__).resolve().parent / "help"
HELP_COLUMNS = "100"


def help_text(command: str) -> str:
    """The ``--help`` of ``command`` as its parser writes it, at :data:`HELP_COLUMNS` columns."""
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        return importlib.import_module(STAGES[command][0]).build_parser().format_help()
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns


def write_help() -> None:
    """Write every command's ``--help`` into :data:`HELP_DIR`."""
    HELP_DIR.mkdir(exist_ok=True)
    for command in STAGES:
        (HELP_DIR / f"{command}.txt").write_text(help_text(command), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--write-help"]:
        write_help()
        return 0
    if len(args) == 2 and args[0] in STAGES and args[1] in ("-h", "--help") and (HELP_DIR / f"{args[0]}.txt").is_file():
        print((HELP_DIR / f"{args[0]}.txt").read_text(encoding="utf-8"), end="")
        return 0
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"videobert {__version__}")
        return 0
    stage, rest = args[0], args[1:]
    if stage not in STAGES:
        print(usage(), file=sys.stderr)
        print(f"\nvideobert: error: unknown stage '{stage}' (choose from {', '.join(STAGES)})", file=sys.stderr)
        return 2
    module = importlib.import_module(STAGES[stage][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
