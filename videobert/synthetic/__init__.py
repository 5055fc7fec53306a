"""A synthetic narrated "how-to" corpus that a model can learn from, with no download (the synth
stage): coloured shapes that move, grow and shrink on textured backgrounds, narrated like ASR
output, with ground-truth labels.

``scenes`` (what each video shows and says), ``render`` (frames, speech, video files), ``stage``
(the OUT folder: ``run``).
"""

from videobert.synthetic.render import espeak_exe, render_frames
from videobert.synthetic.scenes import (
    ACTION_WORDS, ACTIONS, ATTRIBUTES, COLOURS, SHAPES, SceneConfig, label_rows, plan_corpus, read_labels,
)
from videobert.synthetic.stage import SynthConfig, run

__all__ = [
    "ACTIONS", "ACTION_WORDS", "ATTRIBUTES", "COLOURS", "SHAPES", "SceneConfig", "SynthConfig", "espeak_exe",
    "label_rows", "plan_corpus", "read_labels", "render_frames", "run",
]
