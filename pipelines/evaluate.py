"""``videobert evaluate RUN (--corpus CORPUS | --segments SEGMENTS --tokens TOKENS) [--split test]``: metrics of a trained run.

Evaluate a trained run on a corpus split: text→video and video→text retrieval (R@1/5/10,
median and mean rank) over the split's text-video segments, [CLS] alignment accuracy and
zero-shot attribute classification, each beside its chance level. Writes metrics.json.

With --segments (a benchmark's DATA/segments.jsonl from videobert prepare) and --tokens (the visual
words of its videos), the gallery is the split's annotated segments and, on YouCook II and MSR-VTT,
the published figures are printed beside ours with what differs. Zero-shot classification reads
labels.jsonl (beside the corpus's manifest or the segments file, or --labels) with the spec that
classifies them (zeroshot.yaml beside the labels, or --zero-shot), as synth and prepare write them.

Every query is ranked against the whole gallery (N² pairs) up to --exhaustive-limit items; a
larger gallery ranks a seeded sample of --sample-queries queries unless told --exhaustive.
Under torchrun (torchrun --nproc-per-node 8 -m pipelines.evaluate ...) the ranks share the pairs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import add_config_arguments, command, new_parser, report_metrics, resolve_config
from videobert.errors import ConfigError
from videobert.retrieval import stage
from videobert.store import StageCall


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("videobert evaluate", __doc__)
    parser.add_argument("run", type=Path, metavar="RUN", help="run folder (videobert pretrain)")
    parser.add_argument("--corpus", type=Path, metavar="CORPUS", help="corpus folder (videobert corpus)")
    parser.add_argument("--segments", type=Path, metavar="SEGMENTS",
                        help="annotated segments (segments.jsonl: video_id, start, end, sentence, split), instead of a corpus")
    parser.add_argument("--tokens", type=Path, metavar="TOKENS", help="with --segments: the visual words of their videos")
    parser.add_argument("-o", "--out", type=Path, metavar="OUT", help="output folder (default: RUN/eval-<split>)")
    parser.add_argument("--labels", type=Path, metavar="LABELS",
                        help="labels.jsonl for zero-shot classification (default: labels.jsonl beside the corpus's "
                             "manifest, as videobert synth writes it)")
    parser.add_argument("--zero-shot", type=Path, metavar="SPEC",
                        help="zero-shot spec YAML: template, slot and candidate words per attribute "
                             "(default: zeroshot.yaml beside the labels)")
    add_config_arguments(parser, stage.EvaluateConfig)
    return parser


def argv(call: StageCall) -> list[str]:
    """The command line of videobert run's evaluate stage."""
    spec, labels = call.options.get("zero_shot_spec"), call.options.get("labels")
    return [str(call.inputs["model_dir"]), "--corpus", str(call.inputs["corpus_dir"]), "-o", str(call.out_dir),
            "--config", str(call.config_file), *(["--zero-shot", str(spec)] if spec else []),
            *(["--labels", str(labels)] if labels else [])]


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(stage.EvaluateConfig, args)
    if (args.corpus is None) == (args.segments is None) or (args.segments is None) != (args.tokens is None):
        raise ConfigError("give --corpus CORPUS, or --segments SEGMENTS with --tokens TOKENS")
    report(stage.run(args.run, args.corpus, args.out, cfg, labels=args.labels, zero_shot_spec=args.zero_shot,
                     segments=args.segments, tokens=args.tokens))


report = report_metrics

main = command("videobert evaluate", build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
