"""Dialog-aware endpointing and backchannels: the decisions, then a call on small fakes.

The same through real webrtcvad and Whisper is in test_e2e_call.py.
"""

import asyncio
import logging

import numpy as np
import pytest

from tests.fakes import BeepTTS, EchoDialog, EnergyVAD, ScriptedASR, tone
from voicebot.asr.base import ASRContext
from voicebot.audio.frames import FRAME_S, SAMPLE_RATE
from voicebot.events import Expect, Expectation, Reply, SpeechEnded, SpeechPaused, Transcript
from voicebot.pipeline.endpoint import (
    TurnEnd,
    Verdict,
    assess,
    interrupts,
    is_backchannel,
    knows,
)
from voicebot.pipeline.record import CallRecord
from voicebot.pipeline.scheduler import Scheduler
from voicebot.pipeline.session import CallSession
from voicebot.pipeline.workers import PriorityWorkers
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller
from voicebot.vad.endpointer import Endpointer, EndpointerConfig

ZIP = Expectation(Expect.DIGITS, 5, "verification")
YES_NO = Expectation(Expect.YES_NO)


@pytest.mark.parametrize(
    ("text", "expects", "verdict", "seen"),
    [
        ("Nine, four, one.", ZIP, Verdict.INCOMPLETE, "3 of 5 digits"),
        ("9-4-1-0-7.", ZIP, Verdict.COMPLETE, "5 of 5 digits"),
        ("It's 94107", ZIP, Verdict.COMPLETE, "5 of 5 digits"),
        ("I don't have it", ZIP, Verdict.UNSURE, "no digits for digits"),
        ("nine four one", Expectation(Expect.DIGITS), Verdict.INCOMPLETE, "inside a digit"),
        ("nine four one zero seven", Expectation(Expect.DIGITS), Verdict.UNSURE, "no rule"),
        ("My card number is four five", Expectation(), Verdict.INCOMPLETE, "inside a digit"),
        ("The code is seven", Expectation(), Verdict.INCOMPLETE, "inside a digit string (1"),
        ("I lost my card and", Expectation(), Verdict.INCOMPLETE, "trailing 'and'"),
        ("I lost my card.", Expectation(), Verdict.UNSURE, "no rule for request"),
        ("Go forward ten meters", Expectation(), Verdict.UNSURE, "no rule"),
        ("Yes, please.", Expectation(Expect.YES_NO), Verdict.COMPLETE, "a clear yes/no"),
        ("Yes, and", Expectation(Expect.YES_NO), Verdict.INCOMPLETE, "trailing 'and'"),
        ("Well, I'm not sure", Expectation(Expect.YES_NO), Verdict.UNSURE, "no rule"),
        ("five five five one two", Expectation(Expect.PHONE), Verdict.INCOMPLETE, "5 of 10"),
        ("two hundred dollars", Expectation(Expect.AMOUNT), Verdict.COMPLETE, "an amount with its"),
        ("two hundred", Expectation(Expect.AMOUNT), Verdict.UNSURE, "no rule"),
        ("next Friday", Expectation(Expect.DATE), Verdict.COMPLETE, "a date"),
        ("the fifth of", Expectation(Expect.DATE), Verdict.INCOMPLETE, "trailing 'of'"),
        ("", ZIP, Verdict.UNSURE, "nothing heard"),
    ],
)
def test_the_transcript_is_checked_against_what_was_asked(text, expects, verdict, seen):
    found = assess(text, expects)
    assert found.verdict == verdict
    assert found.seen.startswith(seen)
    # What is stored on the turn names counts and cues, never the caller's digits.
    assert "941" not in found.seen and "nine" not in found.seen.lower()


def test_an_expectation_without_a_rule_is_unsure():
    odd = Expectation(kind="signature")  # type: ignore[arg-type]  # a kind added later
    assert not knows(odd)
    assert assess("four five", odd).verdict == Verdict.UNSURE


@pytest.mark.parametrize("text", ["Mm-hmm.", "Okay.", "Yeah, right.", "uh-huh", "Got it."])
def test_backchannels(text):
    assert is_backchannel(text)
    assert not interrupts(500, text, sustained_ms=900)
    assert interrupts(900, text, sustained_ms=900)  # sustained speech interrupts anyway


@pytest.mark.parametrize("text", ["Wait, stop.", "No.", "okay but my card", ""])
def test_not_backchannels(text):
    assert not is_backchannel(text)
    assert interrupts(500, text, sustained_ms=900) == bool(text)
    assert not interrupts(500, None, sustained_ms=900)  # no words yet: not yet


def feed(endpointer, voiced_s, t):
    """Push ``voiced_s`` of speech (prob 1) then return the time after it."""
    events = []
    for _ in range(round(voiced_s / FRAME_S)):
        events.append(endpointer.push(t, 1.0))
        t += FRAME_S
    return t, [e for e in events if e is not None]


def pause(endpointer, turn_end, t, seconds, expects, transcript=None, verdict_after_s=0.1):
    """Push silence; at ``verdict_after_s`` into it the speculative transcript arrives.
    Returns (time, SpeechEnded or None, call time it ended)."""
    for k in range(round(seconds / FRAME_S)):
        event = endpointer.push(t, 0.0)
        t += FRAME_S
        if isinstance(event, SpeechPaused):
            turn_end.paused(expects)
        if transcript is not None and abs(k * FRAME_S - verdict_after_s) < FRAME_S / 2:
            turn_end.heard(transcript)
        if isinstance(event, SpeechEnded):
            return t, event
    return t, None


def heard(text):
    return Transcript(text, -0.2, 0.01, 1.0, 0.3)


def test_a_zip_read_in_two_breaths_is_one_turn_ended_soon_after_the_last_digit():
    ep = Endpointer()
    turn_end = TurnEnd(ep)
    t, _ = feed(ep, 1.0, 0.0)
    t, ended = pause(ep, turn_end, t, 1.2, ZIP, heard("nine four one"))
    assert ended is None, "3 of 5 digits: the caller is not cut off after 1.2 s"
    t, _ = feed(ep, 0.6, t)
    last_voiced = t
    t, ended = pause(ep, turn_end, t, 2.0, ZIP, heard("nine four one zero seven"))
    assert ended is not None and ended.end == pytest.approx(last_voiced)
    decision = turn_end.decision(ended, t)
    assert decision.expected == "digits:5"
    assert decision.verdict == Verdict.COMPLETE and decision.seen == "5 of 5 digits"
    assert decision.timeout_ms == 240 and decision.waited_ms == pytest.approx(240)
    assert [a.seen for a in decision.earlier] == ["3 of 5 digits"]


def test_fixed_endpointing_cuts_the_same_zip_at_the_timeout():
    ep = Endpointer(EndpointerConfig(dialog_aware=False))
    turn_end = TurnEnd(ep)
    t, _ = feed(ep, 1.0, 0.0)
    t, ended = pause(ep, turn_end, t, 1.2, ZIP, heard("nine four one"))
    assert ended is not None
    decision = turn_end.decision(ended, t)
    assert decision.waited_ms == pytest.approx(500) and decision.seen == "fixed timeout"
    assert decision.verdict is None


def test_incomplete_waits_at_most_the_longest_pause():
    ep = Endpointer()
    turn_end = TurnEnd(ep)
    t, _ = feed(ep, 1.0, 0.0)
    t, ended = pause(ep, turn_end, t, 3.0, ZIP, heard("nine four one"))
    assert ended is not None
    decision = turn_end.decision(ended, t)
    assert decision.verdict == Verdict.INCOMPLETE and decision.waited_ms == pytest.approx(1800)


def test_without_a_transcript_the_pause_waits_for_one_up_to_the_longest_pause():
    ep = Endpointer()
    turn_end = TurnEnd(ep)
    t, _ = feed(ep, 1.0, 0.0)
    t, ended = pause(ep, turn_end, t, 3.0, ZIP)
    decision = turn_end.decision(ended, t)
    assert decision.verdict is None and decision.waited_ms == pytest.approx(1800)
    assert decision.seen == "no transcript within 1800 ms"


def test_a_late_verdict_ends_the_turn_at_once_and_unsure_keeps_the_plain_timeout():
    ep = Endpointer()
    turn_end = TurnEnd(ep)
    t, _ = feed(ep, 1.0, 0.0)
    # The recognizer is slow: its "complete" comes after the frame that ends 720 ms into
    # the pause, past 240 ms: the next frame ends the turn.
    t, ended = pause(ep, turn_end, t, 2.0, ZIP, heard("9 4 1 0 7"), verdict_after_s=0.7)
    assert turn_end.decision(ended, t).waited_ms == pytest.approx(740)
    t, _ = feed(ep, 1.0, t)
    t, ended = pause(ep, turn_end, t, 2.0, Expectation(), heard("I lost my card"))
    decision = turn_end.decision(ended, t)
    assert decision.verdict == Verdict.UNSURE and decision.waited_ms == pytest.approx(500)


def test_an_unknown_expectation_falls_back_to_the_plain_timeout_and_is_logged(caplog):
    ep = Endpointer()
    turn_end = TurnEnd(ep)
    t, _ = feed(ep, 1.0, 0.0)
    odd = Expectation(kind="signature")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "voicebot.pipeline.endpoint"):
        t, ended = pause(ep, turn_end, t, 2.0, odd, heard("four five"))
    decision = turn_end.decision(ended, t)
    assert decision.waited_ms == pytest.approx(500)
    assert decision.seen == "unknown expectation 'signature': plain timeout"
    assert "signature" in caplog.text


WITH_MODEL = EndpointerConfig(turn_model="fake")


@pytest.mark.parametrize(
    ("p_complete", "verdict", "waited_ms"),
    [(0.2, Verdict.INCOMPLETE, 1800), (0.9, Verdict.COMPLETE, 240)],
)
def test_the_turn_model_decides_an_open_answer_the_text_cannot(p_complete, verdict, waited_ms):
    ep = Endpointer(WITH_MODEL)
    turn_end = TurnEnd(ep)
    t, _ = feed(ep, 1.0, 0.0)
    for k in range(200):
        event = ep.push(t, 0.0)
        t += FRAME_S
        if isinstance(event, SpeechPaused):
            turn_end.paused(Expectation())
            assert turn_end.wants_audio
        if k == 5:
            turn_end.heard_audio(p_complete)  # the model is in before the transcript
        if k == 10:
            turn_end.heard(heard("I would like to ask about"))  # "unsure": no rule decides
        if isinstance(event, SpeechEnded):
            break
    decision = turn_end.decision(event, t)
    assert decision.verdict == verdict and decision.waited_ms == pytest.approx(waited_ms)
    assert decision.seen.startswith("no rule for request; sounds")


def test_an_unsure_transcript_waits_for_the_turn_model_and_text_rules_come_first():
    ep = Endpointer(WITH_MODEL)
    turn_end = TurnEnd(ep)
    t, _ = feed(ep, 1.0, 0.0)
    # No model verdict: the unsure transcript alone does not shorten the long wait.
    t, ended = pause(ep, turn_end, t, 3.0, Expectation(), heard("I lost my card"))
    decision = turn_end.decision(ended, t)
    assert decision.verdict is None and decision.waited_ms == pytest.approx(1800)
    assert decision.seen == "no rule for request; no turn model verdict within 1800 ms"
    # A trailing "and" is incomplete by the text; the model is not asked to overrule it.
    t, _ = feed(ep, 1.0, t)
    t, ended = pause(ep, turn_end, t, 3.0, Expectation(), heard("my card and"))
    assert turn_end.decision(ended, t).seen == "trailing 'and'"
    # A yes/no question is the text rules' alone.
    t, _ = feed(ep, 1.0, t)
    t, ended = pause(ep, turn_end, t, 3.0, YES_NO, heard("yes"))
    assert not turn_end.wants_audio
    assert turn_end.decision(ended, t).verdict == Verdict.COMPLETE


# --- A call on fakes: the session applies the decisions -----------------------------------


class DigitsASR:
    """Hears one digit per tone burst in the audio: "nine four one" for three bursts."""

    name = "digits"
    WORDS = ("nine", "four", "one", "zero", "seven")

    def transcribe(self, audio: np.ndarray, context: ASRContext | None = None) -> Transcript:
        loud = np.abs(audio) > 0.05
        # A tone crosses zero: count bursts on 10 ms envelopes, not samples.
        frames = loud[: len(loud) // 160 * 160].reshape(-1, 160).any(axis=1)
        bursts = int(frames[0]) + int(np.count_nonzero(frames[1:] & ~frames[:-1]))
        text = " ".join(self.WORDS[:bursts])
        return Transcript(text, -0.2, 0.01, len(audio) / SAMPLE_RATE, 0.01, raw_text=text)


class ZipFirstDialog(EchoDialog):
    def greet(self):
        return Reply("What is your ZIP code", "greeting", expects=ZIP)


def zero_clock() -> float:
    return 0.0  # model compute costs no call time: call-clock timings are exact


def run_call(segments, asr, dialog, config=None):
    from voicebot.pipeline.session import CallConfig

    async def main():
        with PriorityWorkers(2) as executor:
            record = CallRecord(pack="test", asr_model=asr.name, tts_voice="beep")
            caller = SimulatedCaller(segments, tail_s=6.0)
            caller.shows_partials = False
            session = CallSession(
                asr=asr,
                tts=BeepTTS(),
                vad=EnergyVAD(),
                dialog=dialog,
                scheduler=Scheduler(executor, realtime=False, clock=zero_clock),
                record=record,
                config=config or CallConfig(),
            )
            await session.run(caller)
            return record

    return asyncio.run(main())


def digits(n: int) -> np.ndarray:
    gap = np.zeros(round(0.15 * SAMPLE_RATE), np.float32)
    return np.concatenate([np.concatenate([tone(0, 0.3), gap]) for _ in range(n)])


def zip_in_two_breaths() -> list[CallerSegment]:
    breath = np.zeros(round(0.9 * SAMPLE_RATE), np.float32)
    return [CallerSegment(np.concatenate([digits(3), breath, digits(2)]))]


def test_the_session_waits_through_a_mid_digit_pause_and_records_the_decision():
    dialog = ZipFirstDialog()
    record = run_call(zip_in_two_breaths(), DigitsASR(), dialog)
    assert dialog.turns == ["nine four one zero seven"]
    [turn] = [t for t in record.turns if t.role == "caller"]
    decision = turn.endpoint
    assert decision.expected == "digits:5" and decision.verdict == Verdict.COMPLETE
    assert decision.seen == "5 of 5 digits" and decision.timeout_ms == 240
    assert "3 of 5 digits" in [a.seen for a in decision.earlier]
    # On the call clock: the turn ended 240 ms after the last voiced frame (+ the tail the
    # energy VAD counts as voiced: none; frames are 20 ms).
    waited = turn.timings["endpoint"] - turn.timings["speech_end"]
    assert waited == pytest.approx(0.24, abs=0.011) and decision.waited_ms == pytest.approx(
        waited * 1000, abs=1
    )
    assert record.to_dict()["turns"][1]["endpoint"]["verdict"] == "complete"


def test_with_fixed_endpointing_the_same_zip_is_cut_in_two():
    from voicebot.pipeline.session import CallConfig

    dialog = ZipFirstDialog()
    config = CallConfig(endpointer=EndpointerConfig(dialog_aware=False))
    run_call(zip_in_two_breaths(), DigitsASR(), dialog, config)
    assert dialog.turns[0] == "nine four one"  # cut inside the digit string


def over_the_bot(word_tone_seconds: float) -> list[CallerSegment]:
    return [
        CallerSegment(tone(0, 1.0)),
        CallerSegment(tone(1, word_tone_seconds), cue=Cue.BOT_START, delay_s=0.3),
        CallerSegment(tone(2, 0.8)),
    ]


def test_a_backchannel_over_the_bot_does_not_interrupt_it():
    dialog = EchoDialog()
    record = run_call(
        over_the_bot(0.5), ScriptedASR(["i lost my card", "mm-hmm okay", "bye"]), dialog
    )
    assert record.barge_ins == []
    answer = [t for t in record.turns if t.role == "bot"][1]
    assert not answer.interrupted and answer.text == "You said i lost my card. Anything else"
    assert [t.dropped for t in record.turns if t.role == "caller"] == [None, "backchannel", None]
    assert dialog.turns == ["i lost my card", "bye"]  # nobody answers the "mm-hmm"
    assert len(record.false_interruptions) == 1


def test_words_over_the_bot_interrupt_it_as_before():
    dialog = EchoDialog()
    record = run_call(
        over_the_bot(0.5), ScriptedASR(["i lost my card", "wait stop", "bye"]), dialog
    )
    assert len(record.barge_ins) == 1 and record.barge_ins[0]["latency_ms"] <= 200
    assert any(t.interrupted for t in record.turns if t.role == "bot")
    assert dialog.turns == ["i lost my card", "wait stop", "bye"]


def test_sustained_speech_over_the_bot_interrupts_whatever_it_says():
    dialog = EchoDialog()
    asr = ScriptedASR(["i lost my card", "okay", "bye"])
    record = run_call(over_the_bot(1.4), asr, dialog)
    assert len(record.barge_ins) == 1
    assert dialog.turns == ["i lost my card", "okay", "bye"]
