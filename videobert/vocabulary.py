"""The joint vocabulary, where docs/formats.md names it: :class:`videobert.corpus.JointVocabulary`
(defined in :mod:`videobert.corpus.joint_vocab`)."""

from videobert.corpus.joint_vocab import VIDEO_SEP, JointLayout, JointVocabulary

__all__ = ["VIDEO_SEP", "JointLayout", "JointVocabulary"]
