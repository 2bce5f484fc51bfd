"""End-to-end: real webrtcvad, faster-whisper tiny.en, MiniLM intents and Piper, on caller
audio rendered with a different voice and passed through an 8 kHz mu-law phone line."""

import asyncio

import jiwer
import pytest

from tests.conftest import silence
from voicebot.asr.guards import normalize_words
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller

pytestmark = pytest.mark.e2e

PHRASES = [
    "hi I lost my card yesterday and I need to block it",
    "what is my account balance",
    "I want to speak to a real person",
    "someone used my card for a purchase I did not make",
    "can you tell me when my payment is due",
]


def test_recognition_of_telephone_speech(bot, caller_audio):
    refs, hyps = [], []
    for text in PHRASES:
        transcript = bot.asr.transcribe(caller_audio(text))
        assert transcript.dropped is None, transcript
        assert transcript.avg_logprob > -1.0
        assert transcript.no_speech_prob < 0.5
        refs.append(normalize_words(text))
        hyps.append(normalize_words(transcript.text))
    assert jiwer.wer(refs, hyps) <= 0.15, list(zip(refs, hyps, strict=True))


def test_silence_and_noise_are_not_transcribed(bot):
    import numpy as np

    assert bot.asr.transcribe(silence(2.0)).text == ""
    noise = np.random.default_rng(0).normal(0, 0.05, 32000).astype(np.float32)
    assert bot.asr.transcribe(noise).text == ""


def run(bot, segments, caller_id=None, clock=None, **kwargs):
    caller = SimulatedCaller(segments, **kwargs)
    extra = {} if clock is None else {"clock": clock}
    record = asyncio.run(bot.run_call(caller, realtime=False, caller_id=caller_id, **extra))
    return record, caller


def test_full_call_blocks_the_card_in_the_back_office(bot, caller_audio):
    lines = [
        "hi I lost my card yesterday",
        "nine four one zero seven",
        "four five six seven",
        "yes please",
        "no that's all thank you goodbye",
    ]
    record, caller = run(
        bot, [CallerSegment(caller_audio(line)) for line in lines], caller_id="+15551230001"
    )
    caller_turns = [t for t in record.turns if t.role == "caller"]
    bot_turns = [t for t in record.turns if t.role == "bot"]
    assert caller_turns[0].intent == "report_lost_or_stolen_card"
    assert caller_turns[-1].intent == "goodbye"
    heard = [normalize_words(t.text) for t in caller_turns]
    assert (
        jiwer.wer([normalize_words(x) for x in lines[:1] + lines[3:]], heard[:1] + heard[3:]) <= 0.2
    )
    pack = bot.pack
    assert bot_turns[0].text == f"{pack.privacy.consent.announcement} {pack.greeting}"
    assert bot_turns[1].text == pack.verification.prompt
    assert bot_turns[3].text == "Shall I block the card ending in 4 5 6 7?"
    assert "debit card ending in 4 5 6 7 is blocked" in bot_turns[4].text
    assert bot_turns[-1].text == pack.intents["goodbye"].response
    assert record.ended_by == "bot"
    assert [c.status for c in bot.services.cards("c1") if c.last_four == "4567"] == ["blocked"]
    for turn in caller_turns:
        t = turn.timings
        assert t["speech_start"] < t["speech_end"] < t["endpoint"] <= t["asr_final"]
        assert t["asr_final"] <= t["reply_ready"] <= t["first_audio"]
        assert turn.asr["avg_logprob"] > -1.0
    assert caller_turns[0].confidence > 0.5
    # The bot's voice is on the line: the stereo recording has audio on the right channel.
    stereo = caller.stereo()
    assert stereo.shape[1] == 2 and abs(stereo[:, 1]).max() > 1000


def test_barge_in_stops_the_bot_and_the_caller_is_heard(bot, caller_audio):
    record, caller = run(
        bot,
        [
            CallerSegment(caller_audio("hi I lost my card yesterday")),
            # Talks over the bot's question once it has been speaking for a second.
            CallerSegment(caller_audio("actually I want to speak to a person"), Cue.BOT_START, 1.0),
        ],
        caller_id="+15551230002",
        tail_s=8.0,
        # Compute costs no call time: on a loaded machine (4-5 s a recognition) the transfer
        # message would otherwise still be playing when the caller's 8 s of audio run out.
        clock=lambda: 0.0,
    )
    assert len(record.barge_ins) == 1
    barge = record.barge_ins[0]
    assert barge["latency_ms"] <= 200
    cut = next(t for t in record.turns if t.role == "bot" and t.interrupted)
    full = bot.pack.verification.prompt
    assert cut.planned_text == full
    assert 0 < len(cut.text.split()) < len(full.split())
    assert full.startswith(cut.text.rstrip(".,"))
    # Bot audio stops at the barge-in (right channel silent for the next 200 ms).
    stereo = caller.stereo()
    at = round(barge["bot_stopped"] * 16000)
    assert not stereo[at : at + 3200, 1].any()
    second = [t for t in record.turns if t.role == "caller"][1]
    assert second.intent == "speak_to_agent"
    assert "person" in second.text.lower()
    assert record.ended_by == "handoff" and record.handoff_reason == "caller_request"


def test_silent_caller_is_reprompted_then_the_bot_ends_politely(bot):
    record, _ = run(bot, [CallerSegment(silence(3.0))])
    bot_turns = [t for t in record.turns if t.role == "bot"]
    assert [t.kind for t in bot_turns] == ["greeting", "reprompt", "reprompt"]
    assert [t.text for t in bot_turns[1:]] == list(bot.pack.no_input)
    assert record.ended_by == "bot"
