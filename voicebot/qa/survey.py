"""The post-call survey: one question, answered 1-5 on the keypad or by voice (CSAT).

``SurveyDialog`` wraps any ``Dialog`` (``voicebot.dialog.base``). When the inner dialog's
goodbye would end the call, the goodbye is held back and the pack's survey question is asked
instead; the caller's answer (a key press or a spoken "four") goes into the call record as
``record.survey``, then the caller hears the thanks and the held-back goodbye. Handoffs and
the silent-line hang-up are never surveyed (the caller is not there to answer, or is on
their way to a person). A pack opts in with a ``survey:`` section in its QA file
(``intents/qa/<pack>.yaml``).
"""

import re

from voicebot.dialog.base import Dialog
from voicebot.events import CallerTurn, Expect, Expectation, Reply
from voicebot.pipeline.record import CallRecord
from voicebot.qa.form import SurveySpec

_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_NUMBER = re.compile(r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|zero)\b")
_OUT_OF = re.compile(r"\bout of (5|five|10|ten)\b")
_DECLINES = re.compile(r"\b(no|nope|nah|skip|bye|goodbye|rather not)\b")
_ANSWER = Expectation(Expect.DIGITS, digits=1, slot="survey")


def parse_score(text: str) -> int | None:
    """The 1-5 score in an answer ("4", "four", "I'd give it a five", "four out of five"),
    or None when there is none, or more than one number."""
    numbers = set(_NUMBER.findall(_OUT_OF.sub(" ", text.lower())))
    if len(numbers) != 1:
        return None
    (number,) = numbers
    value = int(number) if number.isdigit() else _WORDS.get(number)
    return value if value is not None and 1 <= value <= 5 else None


class SurveyDialog:
    """A ``Dialog`` that asks the survey question before the inner dialog's goodbye."""

    def __init__(self, inner: Dialog, survey: SurveySpec, record: CallRecord) -> None:
        self.inner = inner
        self.survey = survey
        self.record = record
        self._farewell: Reply | None = None  # the goodbye held back while the survey runs
        self._reprompted = False

    def greet(self) -> Reply:
        return self.inner.greet()

    def respond(self, turn: CallerTurn) -> Reply:
        if self._farewell is not None:
            return self._answer(turn)
        reply = self.inner.respond(turn)
        if reply.kind != "farewell" or not reply.end_call:
            return reply
        self._farewell = reply
        self.record.survey = {"asked": True, "score": None, "via": None}
        return Reply(
            self.survey.question,
            kind="question",
            intent=reply.intent,
            decision=reply.decision,
            expects=_ANSWER,
        )

    def not_understood(self, turn: CallerTurn) -> Reply:
        if self._farewell is None:
            return self.inner.not_understood(turn)
        return self._answer(turn)  # a survey answer nobody could make out: no score

    def no_input(self) -> Reply:
        if self._farewell is None:
            return self.inner.no_input()
        return self._goodbye(thanks=False)  # silence is no answer: let the caller go

    def _answer(self, turn: CallerTurn) -> Reply:
        score = parse_score(turn.text)
        if score is not None:
            # Typed digits reach the dialog with no audio behind them (the session's keypad
            # turns); a spoken answer always has some.
            via = "keypad" if turn.transcript.audio_s == 0 else "speech"
            self.record.survey = {"asked": True, "score": score, "via": via}
            return self._goodbye(thanks=True)
        if self._reprompted or _DECLINES.search(turn.text.lower()):
            return self._goodbye(thanks=False)
        self._reprompted = True
        return Reply(self.survey.reprompt, kind="reprompt", expects=_ANSWER)

    def _goodbye(self, *, thanks: bool) -> Reply:
        farewell = self._farewell
        assert farewell is not None
        text = f"{self.survey.thanks} {farewell.text}" if thanks else farewell.text
        return Reply(text, kind="farewell", end_call=True)
