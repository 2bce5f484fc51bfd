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


class ASRDeviceError(VoicebotError):
    """The recognizer cannot run where asked: CUDA missing, or a request beyond its memory."""

    exit_code = 2


class ASRConfigError(VoicebotError):
    """The recognizers asked for do not go together (e.g. a digit model beside the engine)."""

    exit_code = 2


class ASROutOfMemoryError(ASRDeviceError):
    """The accelerator ran out of memory on a batch; a smaller batch may still fit."""


class AudioInputError(VoicebotError):
    """An audio file cannot be used: unreadable, truncated, empty, unsupported or too long."""

    exit_code = 2


class OutputPathError(VoicebotError):
    """An output file cannot be written (a directory, no permission, a read-only disk);
    checked before the work starts, so an hour-long run does not fail at its last step."""

    exit_code = 2


class PackError(VoicebotError):
    """An intent pack file is malformed; the message names the file, line and reason."""

    exit_code = 2


class StoreError(VoicebotError):
    """The database cannot be opened or used; the message names the URL (password hidden)."""

    exit_code = 3


class HandoffError(VoicebotError):
    """An operator action on a handoff is not possible (unknown id, claimed by someone else)."""


class AuthError(VoicebotError):
    """A user, token or secret cannot be used as given (bad name, weak password, unknown
    user, unreadable secret file); the message says what to change."""

    exit_code = 2


class LineProtocolError(VoicebotError):
    """A live line's peer broke its protocol (bad JSON, media before start, wrong codec...).

    ``code`` is the WebSocket close code the peer gets with the message as reason (RFC 6455:
    1003 unsupported data, 1007 invalid payload, 1008 policy violation, 1009 too big), so the
    client learns what it did wrong.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class SipConfigError(VoicebotError):
    """A SIP setting cannot be used (address, port, registrar, credentials, trust list)."""

    exit_code = 2


class EvalInputError(VoicebotError):
    """An eval input (manifest, scenario, report) cannot be used; the message names the file,
    and the line where there is one."""

    exit_code = 2


class QaFormError(VoicebotError):
    """A QA form (``intents/qa/*.yaml``) is malformed; the message names the file, line and
    reason, so a typo fails at start-up instead of scoring every call wrong."""

    exit_code = 2


class NoCallsError(VoicebotError):
    """A report or scoring run found no calls in the range it was given."""


class CallerAudioError(VoicebotError):
    """Simulated caller audio cannot be made: an unknown caller voice or line condition, or
    a speech engine that is missing (the message names the Debian package) or failed."""

    exit_code = 2
