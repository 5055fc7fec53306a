"""The aligned training corpus (the corpus stage): sentences paired with the visual words of their
time span, in one joint id space of WordPieces and visual words.

``joint_vocab`` (the joint id space), ``align`` (sentences to examples), ``stage`` (the CORPUS
folder: ``run`` and the readers).
"""

from videobert.corpus.align import EXAMPLE_KEYS, overlapping_clips, video_only_segments
from videobert.corpus.joint_vocab import VIDEO_SEP, JointLayout, JointVocabulary
from videobert.corpus.stage import CorpusConfig, corpus_summary, load_corpus, run, split_path
from videobert.manifest import SPLITS

__all__ = [
    "EXAMPLE_KEYS", "SPLITS", "VIDEO_SEP", "CorpusConfig", "JointLayout", "JointVocabulary", "corpus_summary",
    "load_corpus", "overlapping_clips", "run", "split_path", "video_only_segments",
]
