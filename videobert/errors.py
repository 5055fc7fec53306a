"""The project's exception types; the command line maps them to exit codes.

* :class:`ConfigError` — the user asked for something invalid (bad key, bad value): exit code 2.
* :class:`InputError` — an input file is missing or malformed (manifest, transcript, weights): exit 1.
* :class:`StageError` — a stage could not do its job (e.g. every video failed): exit 1.

Messages are one line and name the file and the problem.
"""


class VideoBertError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class ConfigError(VideoBertError, ValueError):
    """Invalid configuration or command-line usage."""


class InputError(VideoBertError):
    """A missing, unreadable or malformed input file."""


class StageError(VideoBertError):
    """A stage ran but could not produce its outputs."""
