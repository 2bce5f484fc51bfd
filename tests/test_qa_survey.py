"""The post-call survey wrapper: the question before the goodbye, keypad and spoken answers."""

import asyncio
import time
from dataclasses import replace

import numpy as np
import pytest

from tests.fakes import BeepTTS, EchoDialog, EnergyVAD, ScriptedASR, tone
from voicebot.events import CallerTurn, Decision, Reply, Transcript
from voicebot.pipeline.record import CallRecord
from voicebot.pipeline.scheduler import Scheduler
from voicebot.pipeline.session import CallSession
from voicebot.pipeline.workers import PriorityWorkers
from voicebot.qa.form import SurveySpec
from voicebot.qa.survey import SurveyDialog, parse_score
from voicebot.transports.simulated import CallerSegment, SimulatedCaller

SURVEY = SurveySpec(
    question="How satisfied were you, 1 to 5?", reprompt="Please say 1 to 5.", thanks="Thanks."
)


def said(text: str, *, keypad: bool = False) -> CallerTurn:
    heard = Transcript(text, 0.0 if keypad else -0.2, 0.0, 0.0 if keypad else 0.8, 0.0)
    return CallerTurn(text, heard, 1.0, 1.8)


def survey_dialog(inner=None) -> tuple[SurveyDialog, CallRecord]:
    record = CallRecord(pack="test", asr_model="a", tts_voice="b")
    return SurveyDialog(inner or EchoDialog(), SURVEY, record), record


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("4", 4),
        ("five", 5),
        ("I'd give it a three.", 3),
        ("four out of five", 4),
        ("1", 1),
        ("4 5", None),
        ("seven", None),
        ("0", None),
        ("no thanks", None),
        ("ten out of ten", None),
    ],
)
def test_parse_score(text, score):
    assert parse_score(text) == score


def test_the_goodbye_waits_for_the_survey_answer():
    dialog, record = survey_dialog()
    assert dialog.respond(said("my card")).kind == "answer"  # the inner dialog as usual
    assert record.survey is None
    question = dialog.respond(said("bye"))
    assert (question.text, question.end_call, question.expects.digits) == (
        SURVEY.question,
        False,
        1,
    )
    assert question.intent is not None and question.intent.intent == "goodbye"
    assert record.survey == {"asked": True, "score": None, "via": None}
    goodbye = dialog.respond(said("4", keypad=True))
    assert (goodbye.text, goodbye.kind, goodbye.end_call) == ("Thanks. Goodbye", "farewell", True)
    assert record.survey == {"asked": True, "score": 4, "via": "keypad"}


def test_speech_nobody_could_make_out_is_passed_on_or_asked_again():
    inner = EchoDialog()
    dialog, record = survey_dialog(inner)
    unheard = CallerTurn("", Transcript("", -0.3, 0.1, 0.8, 0.0, dropped="empty"), 1.0, 1.8)
    assert dialog.not_understood(unheard).text == "Sorry, say that again"  # the inner dialog's
    assert inner.turns == ["<empty>"]
    dialog.respond(said("bye"))
    assert dialog.not_understood(unheard).text == SURVEY.reprompt  # the survey asks once more
    assert record.survey["score"] is None


def test_spoken_answer_unclear_answer_and_silence():
    dialog, record = survey_dialog()
    dialog.respond(said("bye"))
    assert dialog.respond(said("hmm not sure")).text == SURVEY.reprompt
    assert dialog.respond(said("I'd say five")).text == "Thanks. Goodbye"
    assert record.survey == {"asked": True, "score": 5, "via": "speech"}

    dialog, record = survey_dialog()
    dialog.respond(said("bye"))
    assert dialog.respond(said("what")).text == SURVEY.reprompt
    unclear = dialog.respond(said("what"))  # asked twice: the caller is let go, unscored
    assert (unclear.text, unclear.end_call) == ("Goodbye", True)
    assert record.survey == {"asked": True, "score": None, "via": None}

    dialog, record = survey_dialog()
    dialog.respond(said("bye"))
    assert dialog.no_input().text == "Goodbye" and record.survey["score"] is None
    dialog, _ = survey_dialog()
    dialog.respond(said("bye"))
    assert dialog.respond(said("no thanks bye")).end_call  # declined: no re-prompt


class _HandsOff(EchoDialog):
    def respond(self, turn):
        decision = Decision("handoff", "caller_request", "asked")
        return Reply("Connecting you.", kind="handoff", end_call=True, decision=decision)


def test_handoffs_and_the_silent_line_hang_up_are_not_surveyed():
    dialog, record = survey_dialog(_HandsOff())
    assert dialog.respond(said("agent")).kind == "handoff" and record.survey is None
    dialog, record = survey_dialog()
    dialog.no_input()
    last = dialog.no_input()  # EchoDialog's second silence ends the call
    assert last.end_call and last.kind == "reprompt" and record.survey is None


class _KeypadCaller(SimulatedCaller):
    """Presses ``digits`` on the keypad as the ``at``-th caller segment starts."""

    def __init__(self, segments, digits: str, at: int) -> None:
        super().__init__(segments, tail_s=3.0)
        self._digits, self._at = digits, at

    async def receive(self):
        before = len(self.segment_starts)
        frame = await super().receive()
        if frame is not None and before < self._at <= len(self.segment_starts):
            frame = replace(frame, dtmf=self._digits)
        return frame


def test_keypad_answer_through_a_call_session():
    """The whole loop: the caller says bye, hears the question, presses 4, hears goodbye."""

    async def main():
        with PriorityWorkers(2) as executor:
            record = CallRecord(pack="test", asr_model="scripted", tts_voice="beep")
            caller = _KeypadCaller(
                [CallerSegment(tone(2, 0.8)), CallerSegment(np.zeros(0, np.float32))], "4", at=2
            )
            session = CallSession(
                asr=ScriptedASR(["i lost my card", "yes please", "bye now"]),
                tts=BeepTTS(),
                vad=EnergyVAD(),
                dialog=SurveyDialog(EchoDialog(), SURVEY, record),
                scheduler=Scheduler(executor, realtime=False, clock=time.perf_counter),
                record=record,
            )
            await session.run(caller)
            return record

    record = asyncio.run(main())
    bot = [t.text for t in record.turns if t.role == "bot"]
    assert bot[-2:] == [SURVEY.question, "Thanks. Goodbye"]
    assert [t.text for t in record.turns if t.kind == "dtmf"] == ["4"]
    assert record.survey == {"asked": True, "score": 4, "via": "keypad"}
    assert record.ended_by == "bot"
    assert record.to_dict()["survey"]["score"] == 4  # what the store and the JSON keep
