"""Typed errors that carry what the user needs to fix the problem.

The CLI turns any ``VoicebotError`` into one clear line and a non-zero exit status;
anything else is a bug and keeps its traceback.
"""


class VoicebotError(Exception):
    """Base class for errors the user can act on."""

    exit_code = 1


class ModelNotFoundError(VoicebotError):
    """A model is neither installed as a package, nor a local directory, nor a hub id."""

    exit_code = 2


class ModelPreparationError(VoicebotError):
    """Preparing a model (e.g. joining split weights) failed or produced a bad file."""


class AudioInputError(VoicebotError):
    """An audio file cannot be used: unreadable, truncated, empty, unsupported or too long."""

    exit_code = 2


class PackError(VoicebotError):
    """An intent pack file is malformed; the message names the file, line and reason."""

    exit_code = 2


class StoreError(VoicebotError):
    """The database cannot be opened or used; the message names the URL (password hidden)."""

    exit_code = 3


class HandoffError(VoicebotError):
    """An operator action on a handoff is not possible (unknown id, claimed by someone else)."""
