"""The dialog stage protocol: caller turns in, replies out."""

from typing import Protocol

from voicebot.events import CallerTurn, IntentResult, Reply


class Dialog(Protocol):
    """One call's conversation state. Methods may block (model compute, back-office calls):
    the pipeline runs them in a worker thread, one at a time per call."""

    def greet(self) -> Reply:
        """The bot's opening line."""
        ...

    def respond(self, turn: CallerTurn) -> Reply:
        """Answer a caller turn."""
        ...

    def not_understood(self, turn: CallerTurn) -> Reply:
        """The caller spoke but the recognizer gave nothing usable (``turn.transcript.dropped``
        says why): ask again, and eventually hand off. Never silence: never hang up on it."""
        ...

    def no_input(self) -> Reply:
        """The caller said nothing for a while; re-prompt, and eventually end the call."""
        ...


class IntentClassifier(Protocol):
    """Maps caller text to one of a pack's intents or ``out_of_scope``."""

    def classify(self, text: str) -> IntentResult: ...
