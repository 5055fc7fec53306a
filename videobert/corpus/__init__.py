"""The aligned training corpus (the corpus stage): sentences paired with the visual words of their
time span, in one joint id space of WordPieces and visual words.

``joint_vocab`` (the joint id space), ``align`` (sentences to examples), ``columns`` (the columnar
tables of flat NumPy arrays shards are made of), ``reader`` (the CORPUS folder's layout;
:class:`CorpusSplit` and :func:`load_corpus`), ``stage`` (``run``: the CORPUS folder).
"""

from videobert.corpus.align import EXAMPLE_KEYS, overlapping_clips, video_only_segments
from videobert.corpus.joint_vocab import VIDEO_SEP, JointLayout, JointVocabulary
from videobert.corpus.reader import CorpusSplit, check_complete, corpus_summary, load_corpus
from videobert.corpus.stage import CorpusConfig, run
from videobert.manifest import SPLITS

__all__ = [
    "EXAMPLE_KEYS", "SPLITS", "VIDEO_SEP", "CorpusConfig", "CorpusSplit", "JointLayout", "JointVocabulary",
    "check_complete", "corpus_summary", "load_corpus", "overlapping_clips", "run", "video_only_segments",
]
