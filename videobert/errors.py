"""The project's exception types; the command line maps them to exit codes.

* :class:`ConfigError` — the user asked for something invalid (bad key, bad value): exit code 2.
* :class:`InputError` — an input file is missing or malformed (manifest, transcript, weights): exit 1.
  Its ``kind`` says what went wrong in a word that failure records keep beside the message
  (:data:`FAILURE_KINDS`), so that programs read the kind and people read the message.
* :class:`StageError` — a stage could not do its job (e.g. every video failed): exit 1.

Messages are one line and name the file and the problem.
"""

# What a failure record's ``kind`` can say (docs/formats.md):
FAILURE_KINDS = {
    "missing": "the file does not exist",
    "unreadable": "the file exists but cannot be read or parsed",
    "no_video": "a media file without a video stream",
    "no_audio": "a media file without an audio stream (speech recognition: a video without speech)",
    "decode": "ffmpeg failed, or decoded well short of the length the container announces",
    "too_short": "shorter than one clip",
    "non_finite": "features holding NaN or infinity",
    "asr_failed": "speech recognition failed for the video (the corpus stage reads the asr stage's records)",
    "no_overlap": "none of the video's sentences overlaps its clips",
    "no_clip": "an annotated segment that covers no clip of its video (it starts after the last whole clip)",
    "error": "an unexpected error (a bug, reported with its exception type)",
    "unknown": "a record written before failure records had a kind",
}


class VideoBertError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class ConfigError(VideoBertError, ValueError):
    """Invalid configuration or command-line usage."""


class InputError(VideoBertError):
    """A missing, unreadable or malformed input file; ``kind`` is one of :data:`FAILURE_KINDS`."""

    def __init__(self, message: str, kind: str = "unreadable"):
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # keeps the kind when the error crosses a process boundary
        return type(self), (str(self), self.kind)


class StageError(VideoBertError):
    """A stage ran but could not produce its outputs; ``exit_code`` is what its command exits with
    (1, or a launched process's own code)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):
        return type(self), (str(self), self.exit_code)


class BarsMissed(VideoBertError):
    """A run finished, but figures of it missed the bars its config promises (:mod:`videobert.bars`)."""
