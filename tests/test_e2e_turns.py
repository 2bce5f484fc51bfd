"""End-to-end turn-taking through the real parts: webrtcvad, faster-whisper tiny.en, the
bank pack's dialog and Piper, on caller audio rendered over an 8 kHz mu-law phone line.

A card's last four digits read in two breaths are one turn, ended soon after the last
digit; an "okay" over the bot's question does not interrupt it. Timings are call time.
"""

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import silence
from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.io import load_audio
from voicebot.audio.telephone import line
from voicebot.pipeline.bot import Bot, BotConfig
from voicebot.pipeline.endpoint import Verdict
from voicebot.pipeline.record import Turn
from voicebot.pipeline.session import CallConfig
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller
from voicebot.tts.caller_voice import DEFAULT_VOICE, speak
from voicebot.vad.endpointer import EndpointerConfig

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]


def test_a_mid_digit_pause_is_waited_through_and_a_backchannel_does_not_barge_in(bot, caller_audio):
    last_four = np.concatenate([caller_audio("four five"), silence(0.9), caller_audio("six seven")])
    segments = [
        CallerSegment(caller_audio("hi I lost my card yesterday")),
        CallerSegment(caller_audio("okay"), Cue.BOT_START, 1.0),  # over the ZIP question
        CallerSegment(caller_audio("nine four one zero seven")),
        CallerSegment(last_four),
        CallerSegment(caller_audio("yes please")),
        CallerSegment(caller_audio("no that's all thank you goodbye")),
    ]
    caller = SimulatedCaller(segments)
    # Model compute costs no call time here: what is asserted does not depend on the load
    # of the machine (the latency a loaded machine adds is scripts/bench_*'s business).
    call = bot.run_call(caller, realtime=False, caller_id="+15551230001", clock=lambda: 0.0)
    record = asyncio.run(call)

    bot_turns = [t for t in record.turns if t.role == "bot"]
    caller_turns = [t for t in record.turns if t.role == "caller"]
    # The "okay" paused the question, which then carried on: no barge-in, nothing cut,
    # and nobody answered it (a backchannel, or a filler the guards dropped).
    assert record.barge_ins == []
    assert not any(t.interrupted for t in bot_turns)
    assert bot_turns[1].text == bot.pack.verification.prompt
    assert caller_turns[1].dropped is not None
    assert len(record.false_interruptions) == 1
    # The last four digits, read with a 0.9 s breath after "four five", are one turn.
    assert any(t.text == "Shall I block the card ending in 4 5 6 7?" for t in bot_turns)
    assert [c.status for c in bot.services.cards("c1") if c.last_four == "4567"] == ["blocked"]
    [digits] = [t for t in caller_turns if t.endpoint and t.endpoint.expected == "digits:4"]
    decision = digits.endpoint
    assert decision.verdict == Verdict.COMPLETE and decision.seen == "4 of 4 digits"
    assert decision.timeout_ms == 240
    assert [(a.verdict, a.seen) for a in decision.earlier] == [
        (Verdict.INCOMPLETE, "2 of 4 digits")
    ]
    # On the call clock: the turn ended no sooner than 240 ms after the last voiced frame,
    # and what is recorded is what happened.
    waited = digits.timings["endpoint"] - digits.timings["speech_end"]
    assert waited >= 0.24 - 1e-6
    assert abs(decision.waited_ms - waited * 1000) <= 1
    assert record.ended_by == "bot"


SENTENCE = ROOT / "eval/asr/audio/ps-librivox-0880.flac"  # "he was not an ill disposed young man"


def first_caller_turn(bot) -> Turn:
    """A recorded reader says the sentence with 1.1 s of silence after "he was not an"."""
    audio = load_audio(SENTENCE)
    cut = round(0.9 * SAMPLE_RATE)
    paused = np.concatenate([audio[:cut], silence(1.1), audio[cut:]])
    caller = SimulatedCaller([CallerSegment(paused)])
    call = bot.run_call(caller, realtime=False, caller_id="+15551230001", clock=lambda: 0.0)
    record = asyncio.run(call)
    return next(t for t in record.turns if t.role == "caller")


@pytest.fixture(scope="module")
def bot_with_turn_model():
    config = BotConfig(call=CallConfig(endpointer=EndpointerConfig(turn_model="smart-turn-v3.2")))
    instance = Bot(config)
    yield instance
    instance.close()


def test_the_turn_model_keeps_a_real_callers_mid_sentence_pause_inside_the_turn(
    bot, bot_with_turn_model
):
    """Real read speech, a free request: the text rules cannot tell that "he was not an"
    is unfinished (the plain timeout cuts the sentence); Smart Turn hears it and waits."""
    plain = first_caller_turn(bot)
    assert "young man" not in plain.text.lower()  # cut at the pause
    assert plain.endpoint.seen == "no rule for request"
    whole = first_caller_turn(bot_with_turn_model)
    assert "not an" in whole.text.lower() and "young man" in whole.text.lower()
    [at_the_pause] = whole.endpoint.earlier
    assert at_the_pause.verdict == Verdict.INCOMPLETE
    assert at_the_pause.seen.startswith("no rule for request; sounds unfinished")


MONOLOGUE = (  # about 26 s read without a pause: the story behind a lost card
    "hi I lost my card yesterday and I think somebody has been using it",
    "I was at the supermarket in the afternoon and paid for my groceries",
    "then I took the bus home and my wallet must have fallen out of my bag",
    "when I got home I looked everywhere in the house and in the car",
    "this morning I saw two payments on the app that I did not make",
    "one was at a petrol station and the other one was at a restaurant",
    "so I am really worried and I want you to block the card right away",
)


def test_a_caller_who_talks_on_without_a_pause_is_cut_at_the_maximum_length_and_answered_once(
    bot, caller_audio
):
    def unpadded(text: str) -> np.ndarray:
        audio = caller_audio(text)
        loud = np.flatnonzero(np.abs(audio) > 0.02)
        return audio[loud[0] : loud[-1]]

    monologue = np.concatenate([unpadded(line) for line in MONOLOGUE])
    caller = SimulatedCaller([CallerSegment(monologue), CallerSegment(caller_audio("yes"))])
    call = bot.run_call(caller, realtime=False, caller_id="+15551230001", clock=lambda: 0.0)
    record = asyncio.run(call)

    first, rest, *_ = [t for t in record.turns if t.role == "caller"]
    limit = bot.config.call.endpointer.max_turn_ms / 1000
    assert first.endpoint.seen == f"cut at the maximum turn length ({limit * 1000:.0f} ms)"
    assert first.end - first.start == pytest.approx(limit, abs=0.02)
    # The next turn starts where the cut one ended: no audio is lost or heard twice, and
    # both pieces are recorded with their words.
    assert rest.start == first.end
    assert "lost my card" in first.text.lower() and "block the card" in rest.text.lower()
    # The dialog heard the whole story once, after the caller stopped: the first piece got
    # no reply of its own, and nothing was said over the caller.
    bot_turns = [t for t in record.turns if t.role == "bot"]
    assert first.intent is None and rest.intent == "report_lost_or_stolen_card"
    assert [t.start > rest.end for t in bot_turns[1:]] == [True] * len(bot_turns[1:])
    assert record.barge_ins == [] and not any(t.interrupted for t in bot_turns)


@pytest.mark.parametrize("background", ["babble-12", "music-12"])
def test_a_tv_or_music_behind_the_caller_opens_no_turn_and_the_caller_over_it_is_answered(
    bot, tts, background
):
    """Six real talkers at once (a TV, a crowd) or music, from the call's first frame and
    12 dB under the caller: the greeting plays out, nothing is heard as a turn, and when
    the caller speaks over it at 10 s the words are heard and answered."""
    words = speak("hi I lost my card yesterday", DEFAULT_VOICE, piper=tts)
    clean = np.concatenate([silence(10.0), words, silence(2.0)])
    audio = line(f"mulaw+{background}").apply(clean)
    caller = SimulatedCaller([CallerSegment(audio, Cue.CALL_START, 0.0)], tail_s=1.0)
    call = bot.run_call(caller, realtime=False, caller_id="+15551230001", clock=lambda: 0.0)
    record = asyncio.run(call)

    greeting = next(t for t in record.turns if t.role == "bot")
    assert not greeting.interrupted and greeting.end < 10.0  # it played out over the noise
    assert record.barge_ins == [] and record.false_interruptions == []
    [caller_turn] = [t for t in record.turns if t.role == "caller"]
    assert caller_turn.start >= 10.0 - 0.1  # no turn before the caller spoke
    assert caller_turn.intent == "report_lost_or_stolen_card"
