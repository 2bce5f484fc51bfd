import numpy as np

from voicebot.audio.frames import FRAME_SAMPLES
from voicebot.events import Reply, SpeechChunk
from voicebot.pipeline.playout import BotUtterance, Playout


def chunk(text, frames):
    return SpeechChunk(text, np.full(frames * FRAME_SAMPLES, 100, np.int16))


def test_plays_sentences_back_to_back_and_reports_start_and_end():
    playout = Playout()
    utt = BotUtterance(Reply("One two. Three four.", kind="answer"))
    playout.add(utt)
    tick = playout.next_frame(0.0)
    assert not tick.pcm.any() and not tick.started  # waiting for TTS: silence
    playout.push_chunk(utt, chunk("One two.", 2))
    tick = playout.next_frame(0.02)
    assert tick.started == [utt] and utt.first_audio == 0.02 and tick.pcm.all()
    playout.push_chunk(utt, chunk("Three four.", 1))
    utt.synthesized = True
    assert playout.next_frame(0.04).pcm.all()
    assert playout.next_frame(0.06).pcm.all()
    tick = playout.next_frame(0.08)
    assert tick.finished == [utt] and utt.ended == 0.08
    assert utt.spoken_text() == "One two. Three four."


def test_clear_reports_what_was_heard():
    playout = Playout()
    utt = BotUtterance(Reply("a b c d. e f.", kind="answer"))
    playout.add(utt)
    playout.push_chunk(utt, chunk("a b c d.", 4))
    playout.push_chunk(utt, chunk("e f.", 2))
    playout.next_frame(0.0)
    playout.next_frame(0.02)
    assert playout.clear(0.04) == [utt]
    assert utt.interrupted and utt.ended == 0.04
    assert utt.spoken_text() == "a b"  # half of the first sentence's words
    assert playout.current is None and not playout.next_frame(0.06).pcm.any()


def test_partial_frame_is_filled_from_the_next_sentence():
    playout = Playout()
    utt = BotUtterance(Reply("x. y.", kind="answer"))
    playout.add(utt)
    playout.push_chunk(utt, SpeechChunk("x.", np.full(100, 1, np.int16)))
    playout.push_chunk(utt, SpeechChunk("y.", np.full(100, 2, np.int16)))
    pcm = playout.next_frame(0.0).pcm
    assert list(pcm[98:102]) == [1, 1, 2, 2] and not pcm[200:].any()
