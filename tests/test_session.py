"""Turn-taking, barge-in, re-prompts and timing bookkeeping of a call, on small fakes.

The same behaviour through the real models is covered in test_e2e_call.py.
"""

import asyncio
import itertools
import time

import numpy as np
import pytest

from tests.fakes import BeepTTS, EchoDialog, EnergyVAD, ScriptedASR, keypad_tones, tone
from voicebot.events import ConsentState, Expect, Expectation, Reply, Transcript
from voicebot.pipeline.record import CallRecord
from voicebot.pipeline.scheduler import Scheduler
from voicebot.pipeline.session import CallConfig, CallSession
from voicebot.pipeline.workers import PriorityWorkers
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller
from voicebot.vad.endpointer import EndpointerConfig

TEXTS = ["i lost my card", "yes please", "bye now"]


def no_compute_time() -> float:
    """A scheduler clock that never moves: model compute costs no call time, so call-clock
    timings are exact whatever the machine's load (the fakes' compute is not what is tested)."""
    return 0.0


def run_call(
    segments,
    *,
    asr=None,
    config=None,
    tail_s=20.0,
    workers=2,
    phone=False,
    clock=None,
    dialog=None,
    vocabulary=(),
):
    async def main():
        with PriorityWorkers(workers) as executor:
            record = CallRecord(pack="test", asr_model="scripted", tts_voice="beep")
            caller = SimulatedCaller(segments, tail_s=tail_s)
            if phone:
                caller.shows_partials = False  # as a phone line: nobody sees partials
            session = CallSession(
                asr=asr or ScriptedASR(TEXTS),
                tts=BeepTTS(),
                vad=EnergyVAD(),
                dialog=dialog or EchoDialog(),
                scheduler=Scheduler(executor, realtime=False, clock=clock or time.perf_counter),
                record=record,
                config=config,
                vocabulary=vocabulary,
            )
            await session.run(caller)
            return record, caller

    return asyncio.run(main())


def caller_turns(record):
    return [t for t in record.turns if t.role == "caller"]


def bot_turns(record):
    return [t for t in record.turns if t.role == "bot"]


def test_turns_follow_each_other_and_bot_hangs_up():
    record, caller = run_call([CallerSegment(tone(0, 1.2)), CallerSegment(tone(2, 0.8))])
    assert [t.text for t in caller_turns(record)] == ["i lost my card", "bye now"]
    assert [t.kind for t in bot_turns(record)] == ["greeting", "answer", "farewell"]
    assert bot_turns(record)[1].text == "You said i lost my card. Anything else"
    assert record.ended_by == "bot"
    # Each caller segment started only after the bot had finished talking.
    assert caller.segment_starts[0] > bot_turns(record)[0].end
    assert caller.segment_starts[1] > bot_turns(record)[1].end


def test_timings_are_ordered_and_latency_includes_the_silence_timeout():
    segments = [CallerSegment(tone(0, 1.0)), CallerSegment(tone(2, 0.8))]
    record, _ = run_call(segments, clock=no_compute_time)
    for turn in caller_turns(record):
        t = turn.timings
        assert t["speech_start"] < t["speech_end"] < t["endpoint"] <= t["asr_final"]
        assert t["asr_final"] <= t["reply_ready"] <= t["first_audio"]
        # End of speech -> endpoint is the 500 ms silence timeout (whole 20 ms frames).
        assert t["endpoint"] - t["speech_end"] == pytest.approx(0.5, abs=0.021)
        assert t["voice_to_voice_ms"] == pytest.approx((t["first_audio"] - t["speech_end"]) * 1000)
        # With free compute, only the timeout and a few 20 ms ticks of hand-over remain.
        assert 500 <= t["voice_to_voice_ms"] <= 600
    assert caller_turns(record)[0].timings["speech_start"] == pytest.approx(
        caller_turns(record)[0].start
    )


def test_a_line_without_a_screen_gets_no_partials_but_the_same_finals():
    segments = [CallerSegment(tone(0, 3.0)), CallerSegment(tone(2, 0.8))]
    shown, phone = ScriptedASR(TEXTS), ScriptedASR(TEXTS)
    with_screen, _ = run_call(segments, asr=shown)
    on_phone, _ = run_call(segments, asr=phone, phone=True)
    assert [t.text for t in caller_turns(on_phone)] == [t.text for t in caller_turns(with_screen)]
    # A 3 s turn gets partials on a screen (one a second); the phone call only transcribes
    # what it answers: one speculative/final recognition per turn.
    assert len(shown.calls) >= len(phone.calls) + 2
    assert len(phone.calls) == 2


class FailingOnceASR(ScriptedASR):
    """A recognizer whose first final fails, as a GPU out of memory would."""

    def __init__(self, texts):
        super().__init__(texts)
        self.failed = False

    def transcribe(self, audio, context=None):
        if not self.failed and len(audio) > 16000:
            self.failed = True
            raise RuntimeError("CUDA out of memory")
        return super().transcribe(audio, context)


def test_a_recognizer_failure_drops_that_turn_and_the_call_goes_on(caplog):
    asr = FailingOnceASR(TEXTS)
    record, _ = run_call(
        [CallerSegment(tone(0, 1.2)), CallerSegment(tone(2, 0.8))],
        asr=asr,
        config=CallConfig(partial_interval_s=0),
    )
    turns = caller_turns(record)
    assert asr.failed and turns[0].dropped == "asr_error" and not turns[0].text
    assert turns[-1].text == "bye now" and record.ended_by == "bot"
    assert "transcription failed: RuntimeError('CUDA out of memory')" in caplog.text


def test_slow_recognizer_shows_up_in_latency():
    """The simulated clock charges model compute to the call: it is not free in fast mode."""
    slow = ScriptedASR(TEXTS, compute_s=0.9)
    record, _ = run_call(
        [CallerSegment(tone(2, 1.0))], asr=slow, config=CallConfig(partial_interval_s=0)
    )
    (turn,) = caller_turns(record)
    # Speculative final starts 80 ms into the silence and takes 0.9 s.
    assert turn.timings["asr_final"] - turn.timings["speech_end"] >= 0.98 - 0.02
    assert turn.timings["voice_to_voice_ms"] >= 960


def test_barge_in_stops_the_bot_quickly_and_keeps_only_what_was_heard():
    segments = [
        CallerSegment(tone(0, 1.0)),
        # Talk over the bot's answer 0.6 s after it starts.
        CallerSegment(tone(1, 1.0), cue=Cue.BOT_START, delay_s=0.6),
        CallerSegment(tone(2, 0.8)),
    ]
    record, caller = run_call(segments)
    assert len(record.barge_ins) == 1
    barge = record.barge_ins[0]
    assert barge["latency_ms"] <= 200
    assert caller.interrupts, "the transport was told to flush bot audio"
    cut = [t for t in bot_turns(record) if t.interrupted]
    assert len(cut) == 1
    assert cut[0].planned_text == "You said i lost my card. Anything else"
    assert cut[0].text and "You said i lost my card".startswith(cut[0].text)
    assert cut[0].end == pytest.approx(barge["bot_stopped"])
    # The bot went quiet: no bot audio after the barge-in until the next reply.
    stopped = round(barge["bot_stopped"] / 0.02)
    quiet = np.concatenate(caller.bot_track[stopped : stopped + 10])
    assert not quiet.any()
    # The interrupting turn was heard and answered normally.
    assert [t.text for t in caller_turns(record)] == ["i lost my card", "yes please", "bye now"]
    assert bot_turns(record)[-2].text == "You said yes please. Anything else"


def test_silence_reprompts_then_ends_politely():
    record, _ = run_call([], tail_s=30.0, clock=no_compute_time)
    kinds = [t.kind for t in bot_turns(record)]
    assert kinds == ["greeting", "reprompt", "reprompt"]
    assert record.ended_by == "bot"
    assert not caller_turns(record)
    gap = bot_turns(record)[1].start - bot_turns(record)[0].end
    assert 6.0 <= gap <= 6.1  # the no-input timeout, then a few ticks to the first audio


def test_short_noise_is_not_a_turn():
    burst = np.concatenate([tone(0, 0.12), np.zeros(8000, np.float32), tone(2, 0.8)])
    record, _ = run_call([CallerSegment(burst)])
    assert [t.text for t in caller_turns(record)] == ["bye now"]


def test_caller_hanging_up_ends_the_call():
    record, _ = run_call([CallerSegment(tone(0, 1.0))], tail_s=0.5)
    assert record.ended_by == "caller"


def test_records_are_persisted_after_every_change():
    class Sink:
        def __init__(self):
            self.snapshots = []

        def update(self, record):
            self.snapshots.append(len(record.turns))

    sink = Sink()

    async def main():
        with PriorityWorkers(2) as executor:
            record = CallRecord(pack="test", asr_model="scripted", tts_voice="beep")
            session = CallSession(
                asr=ScriptedASR(TEXTS),
                tts=BeepTTS(),
                vad=EnergyVAD(),
                dialog=EchoDialog(),
                scheduler=Scheduler(executor, realtime=False),
                record=record,
                sinks=[sink],
            )
            await session.run(SimulatedCaller([CallerSegment(tone(2, 0.8))]))
            return record

    record = asyncio.run(main())
    assert sink.snapshots[-1] == len(record.turns)
    # The caller turn was saved before the bot's answer to it existed.
    assert 1 in sink.snapshots and 2 in sink.snapshots


def test_a_cough_over_the_bot_pauses_it_briefly_then_it_carries_on():
    cough = tone(0, 0.14)  # long enough to pause the bot (100 ms), too short to be speech
    segments = [
        CallerSegment(tone(0, 1.0)),
        CallerSegment(cough, cue=Cue.BOT_START, delay_s=0.3),
        CallerSegment(tone(2, 0.8)),
    ]
    record, caller = run_call(segments)
    assert record.barge_ins == []
    assert len(record.false_interruptions) == 1
    answer = bot_turns(record)[1]
    assert not answer.interrupted and answer.text == "You said i lost my card. Anything else"
    # The bot went quiet while the cough lasted, then finished its sentence: all of its
    # audio was played, just later.
    paused_at = round(record.false_interruptions[0] / 0.02)
    assert not np.concatenate(caller.bot_track[paused_at : paused_at + 3]).any()
    played = sum(int(np.count_nonzero(f)) for f in caller.bot_track)
    words = sum(len(t.text.split()) for t in bot_turns(record))
    assert played == pytest.approx(words * 0.2 * 16000, rel=0.01)
    assert [t.text for t in caller_turns(record)] == ["i lost my card", "bye now"]


def test_a_batching_engine_gets_the_requests_directly_with_their_kind():
    from tests.fakes import EngineScriptedASR

    engine = EngineScriptedASR(TEXTS)
    # One worker thread: if ASR requests blocked it, the replies would queue behind them.
    segments = [CallerSegment(tone(0, 3.0)), CallerSegment(tone(2, 0.8))]
    record, _ = run_call(segments, asr=engine, workers=1)
    assert [t.text for t in caller_turns(record)] == ["i lost my card", "bye now"]
    assert False in engine.submitted and True in engine.submitted  # partials and finals
    assert engine.closed_calls == 1  # the call's pending requests are dropped at hang-up


class DigitQuestionDialog(EchoDialog):
    """Asks for a ZIP code first, then answers like ``EchoDialog``."""

    def greet(self) -> Reply:
        return Reply(
            "What is your ZIP code", kind="question", expects=Expectation(Expect.DIGITS, 5)
        )


def test_the_recognizer_hears_each_turn_with_the_question_it_answers():
    asr = ScriptedASR(TEXTS)
    segments = [CallerSegment(tone(0, 1.0)), CallerSegment(tone(2, 0.8))]
    record, _ = run_call(
        segments, asr=asr, dialog=DigitQuestionDialog(), phone=True, vocabulary=("Northwind",)
    )
    first, second = (t for t in caller_turns(record))
    assert first.asr["expects"] == "digits" and second.asr["expects"] == "request"
    kinds = [c.expects.kind for c in asr.contexts]
    assert kinds[0] == Expect.DIGITS and kinds[-1] == Expect.REQUEST
    assert all(c.vocabulary == ("Northwind",) for c in asr.contexts)
    assert asr.contexts[0].expects.digits == 5


def test_a_batching_engine_gets_each_request_with_its_context():
    from tests.fakes import EngineScriptedASR

    engine = EngineScriptedASR(TEXTS)
    segments = [CallerSegment(tone(0, 1.0)), CallerSegment(tone(2, 0.8))]
    run_call(segments, asr=engine, dialog=DigitQuestionDialog(), phone=True)
    assert [c.expects.kind for c in engine.contexts] == [Expect.DIGITS, Expect.REQUEST]


def test_speech_without_words_is_not_understood_and_asked_again():
    """Index 7 has no scripted text: the recognizer gives nothing usable for real speech."""
    dialog = EchoDialog()
    segments = [CallerSegment(tone(7, 1.0)), CallerSegment(tone(2, 0.8))]
    record, _ = run_call(segments, dialog=dialog, phone=True)
    unheard, bye = caller_turns(record)
    assert unheard.dropped == "empty" and unheard.heard == "no_words"
    assert bye.heard == "words"
    assert dialog.turns == ["<empty>", "bye now"]
    assert [t.text for t in bot_turns(record)][1] == "Sorry, say that again"
    assert record.ended_by == "bot"


class NoSpeechASR(ScriptedASR):
    """Whisper's own verdict on a noise the VAD let through: no speech."""

    def transcribe(self, audio, context=None):
        heard = super().transcribe(audio, context)
        if heard.text:
            return heard
        return Transcript("", -1.5, 0.9, heard.audio_s, 0.0, dropped="no_speech", raw_text="you")


def test_noise_the_recognizer_judges_no_speech_stays_silence():
    dialog = EchoDialog()
    segments = [CallerSegment(tone(7, 1.0)), CallerSegment(tone(2, 0.8))]
    record, _ = run_call(segments, asr=NoSpeechASR(TEXTS), dialog=dialog, phone=True)
    noise, bye = caller_turns(record)
    assert noise.heard == "silence" and noise.dropped == "no_speech" and bye.heard == "words"
    assert dialog.turns == ["bye now"]  # never answered


def test_keypad_tones_in_the_audio_are_a_keypad_turn_not_speech():
    asr = ScriptedASR(TEXTS)
    dialog = EchoDialog()
    typed = np.concatenate([keypad_tones("94107"), np.zeros(32000, np.float32)])
    record, _ = run_call(
        [CallerSegment(typed), CallerSegment(tone(2, 0.8))], asr=asr, dialog=dialog
    )
    keypad, bye = caller_turns(record)
    assert keypad.kind == "dtmf" and keypad.text == "9 4 1 0 7" and bye.text == "bye now"
    assert dialog.turns == ["9 4 1 0 7", "bye now"]
    assert len(asr.calls) <= 2  # the tones were never sent to the recognizer as speech


def test_the_pound_key_ends_a_keypad_entry_at_once():
    dialog = EchoDialog()
    typed = keypad_tones("4567#")
    record, _ = run_call([CallerSegment(typed), CallerSegment(tone(2, 0.8))], dialog=dialog)
    keypad = caller_turns(record)[0]
    assert keypad.text == "4 5 6 7"
    # "#" submits without waiting for the 1.5 s gap after the last key.
    assert keypad.start - record.turns[0].end < len(typed) / 16000 + 0.6


class SlowDialog(EchoDialog):
    """The issue's repro: respond() takes 3 s; notes what it was asked and how many at once."""

    def __init__(self):
        super().__init__()
        self.active = self.most_active = 0

    def respond(self, turn):
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            time.sleep(3.0)
            return super().respond(turn)
        finally:
            self.active -= 1


def test_the_dialog_answers_one_request_at_a_time_and_every_answer_is_recorded():
    """The caller says "yes", pauses past the silence timeout, and goes on ("and my balance")
    while the dialog is still answering the "yes": it was asked ["yes", "yes and my balance"]
    with two answers in flight, and the first answer (its action) was never recorded."""
    dialog = SlowDialog()

    async def main():
        with PriorityWorkers(2) as executor:
            record = CallRecord(pack="test", asr_model="scripted", tts_voice="beep")
            segments = [
                CallerSegment(tone(0, 0.8), Cue.CALL_START, 2.0),
                CallerSegment(tone(1, 1.0), Cue.CALL_START, 4.0),  # during the slow answer
            ]
            session = CallSession(
                asr=ScriptedASR(["yes", "and my balance"]),
                tts=BeepTTS(),
                vad=EnergyVAD(),
                dialog=dialog,
                scheduler=Scheduler(executor, realtime=False),
                record=record,
                config=CallConfig(partial_interval_s=0),
            )
            await session.run(SimulatedCaller(segments, tail_s=12.0))
            return record

    record = asyncio.run(main())
    assert dialog.turns == ["yes", "and my balance"]
    assert dialog.most_active == 1
    yes, _ = caller_turns(record)
    assert yes.intent == "echo" and "reply_ready" in yes.timings  # its answer was recorded
    unheard = next(t for t in bot_turns(record) if t.planned_text == "You said yes. Anything else")
    assert unheard.interrupted and unheard.text == ""
    answered = [t.text for t in bot_turns(record) if t.kind == "answer"]
    assert answered == ["", "You said and my balance. Anything else"]  # heard: the second


class ZipDialog(EchoDialog):
    """Asks a verification question first, as the bank pack does."""

    def greet(self):
        expects = Expectation(Expect.DIGITS, 5, "verification", sensitive=True)
        return Reply(
            "What is your ZIP code", "greeting", expects=expects, consent=ConsentState.NOTIFIED
        )


def test_a_sensitive_answer_is_masked_in_the_record_and_muted_in_the_recording():
    dialog = ZipDialog()

    async def main():
        with PriorityWorkers(2) as executor:
            record = CallRecord(pack="test", asr_model="scripted", tts_voice="beep")
            caller = SimulatedCaller([CallerSegment(tone(0, 1.0))], tail_s=4.0)
            session = CallSession(
                asr=ScriptedASR(["nine four one zero seven"]),
                tts=BeepTTS(),
                vad=EnergyVAD(),
                dialog=dialog,
                scheduler=Scheduler(executor, realtime=False, clock=no_compute_time),
                record=record,
            )
            await session.run(caller)
            return record, caller

    record, caller = asyncio.run(main())
    assert dialog.turns == ["nine four one zero seven"]  # the dialog hears it in clear
    [answer] = caller_turns(record)
    assert answer.text == "[verification answer]" and answer.asr["raw_text"] == answer.text
    assert answer.policy is None or "nine" not in str(answer.policy)
    [span] = [m for m in record.muted if m["reason"] == "verification"]
    assert span["start"] <= answer.start < answer.end <= span["end"]
    stereo = caller.stereo()
    muted = stereo[round(span["start"] * 16000) : round(span["end"] * 16000)]
    assert not muted.any()  # neither leg: the caller's answer is not in the recording
    after = stereo[round(span["end"] * 16000) :, 1]
    assert np.abs(after).max() > 1000  # recording resumes with the bot's answer
    assert record.consent["state"] == "notified"


def test_speech_without_a_pause_is_cut_at_the_maximum_length_and_answered_once():
    config = CallConfig(endpointer=EndpointerConfig(max_turn_ms=1000))
    dialog = EchoDialog()
    record, _ = run_call([CallerSegment(tone(0, 2.5))], config=config, dialog=dialog, phone=True)
    pieces = caller_turns(record)[:3]
    assert [t.endpoint.seen.startswith("cut at the maximum") for t in pieces] == [
        True,
        True,
        False,
    ]
    assert [b.start == a.end for a, b in itertools.pairwise(pieces)] == [True, True]
    assert dialog.turns[0] == "i lost my card i lost my card i lost my card"


def test_words_before_an_unusable_last_piece_are_still_answered():
    """The rest of a cut turn gives nothing usable (index 7 has no text): the caller is
    answered on the words of the cut piece, not told they were not understood."""
    config = CallConfig(endpointer=EndpointerConfig(max_turn_ms=1000))
    dialog = EchoDialog()
    segments = [CallerSegment(np.concatenate([tone(0, 1.0), tone(7, 0.6)]))]
    record, _ = run_call(segments, config=config, dialog=dialog, phone=True)
    cut, rest = caller_turns(record)[:2]
    assert cut.text == "i lost my card" and rest.dropped == "empty"
    assert dialog.turns[0] == "i lost my card"
