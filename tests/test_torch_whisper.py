"""Whisper on torch from the converted packaged weights: same words as faster-whisper,
batched equal to unbatched, long and empty audio, device choice and fallback."""

import numpy as np
import pytest
import torch

from tests.conftest import silence
from voicebot.asr import choose_backend, make_asr, split_backend
from voicebot.asr.batching import BatchingASR
from voicebot.asr.torch_whisper import TorchWhisperASR, _chunks, pick_device, pick_dtype
from voicebot.errors import ASRDeviceError, ModelNotFoundError

PHRASES = ["hi I think I lost my card yesterday", "can I speak to a real person please"]


@pytest.fixture(scope="module")
def torch_asr():
    """tiny.en converted once into the model cache, fp32 on CPU."""
    return TorchWhisperASR("tiny.en", device="cpu")


@pytest.fixture(scope="module")
def clips(caller_audio):
    return [caller_audio(text) for text in PHRASES]


@pytest.mark.e2e
def test_converted_weights_give_faster_whispers_transcripts(torch_asr, clips):
    from voicebot.asr.faster_whisper import FasterWhisperASR

    reference = FasterWhisperASR("tiny.en", compute_type="float32")
    for audio in clips:
        ours, theirs = torch_asr.transcribe(audio), reference.transcribe(audio)
        assert ours.raw_text == theirs.raw_text
        assert ours.no_speech_prob == pytest.approx(theirs.no_speech_prob, abs=1e-3)
        assert ours.avg_logprob == pytest.approx(theirs.avg_logprob, abs=0.05)


@pytest.mark.e2e
def test_batched_equals_unbatched(torch_asr, clips):
    audios = [clips[0], silence(1.0), clips[1][: len(clips[1]) // 2]]
    alone = [torch_asr.transcribe(a) for a in audios]
    together = torch_asr.transcribe_batch(audios)
    assert [t.raw_text for t in together] == [t.raw_text for t in alone]
    assert [t.dropped for t in together] == [t.dropped for t in alone]
    for a, b in zip(alone, together, strict=True):
        assert a.avg_logprob == pytest.approx(b.avg_logprob, abs=1e-4)


@pytest.mark.e2e
def test_the_shared_engine_returns_what_the_model_does(torch_asr, clips):
    engine = BatchingASR(torch_asr)
    futures = [engine.submit(a, final=i == 0) for i, a in enumerate(clips)]
    assert [f.result(60).raw_text for f in futures] == [
        t.raw_text for t in torch_asr.transcribe_batch(clips)
    ]
    engine.close()


@pytest.mark.e2e
def test_a_digit_answer_is_read_from_the_pooled_beams_batched_or_not(torch_asr, clips, tts):
    """A ZIP with "double" and "oh" comes out "Not all 3 1 or 1." from the greedy decode
    under the digit prompt; the pooled beams hold "double three one oh one", as
    faster-whisper's do (tests/test_asr_digits.py). In a batch beside turns that expect
    nothing, it is read the same and they keep theirs."""
    from voicebot.asr.base import ASRContext
    from voicebot.dialog.slots import read_digits
    from voicebot.events import Expect, Expectation
    from voicebot.tts.caller_voice import render_caller

    audio = render_caller("double three one oh one", voice="espeak-us", line="mulaw", piper=tts)
    zip_code = ASRContext(Expectation(Expect.DIGITS, digits=5, slot="verification"))
    unsure = ASRContext(Expectation(Expect.DIGITS))  # no length: nothing to fit, greedy
    assert read_digits(torch_asr.transcribe(audio, unsure).text, 5) != "33101"
    alone = torch_asr.transcribe(audio, zip_code)
    assert read_digits(alone.text, 5) == "33101"
    together = torch_asr.transcribe_batch([clips[0], audio, clips[1]], [None, zip_code, None])
    assert together[1].raw_text == alone.raw_text
    assert [together[0].raw_text, together[2].raw_text] == [
        t.raw_text for t in torch_asr.transcribe_batch(clips)
    ]


@pytest.mark.e2e
def test_audio_longer_than_30s_is_chunked(torch_asr, clips):
    long = np.concatenate([clips[0], silence(30.0 - len(clips[0]) / 16000 - 1), clips[1]])
    assert len(long) > 30 * 16000
    result = torch_asr.transcribe(long)
    words = result.text.lower()
    assert "lost" in words and "person" in words  # one from each side of the cut
    assert result.audio_s == pytest.approx(len(long) / 16000)


def test_chunks_cut_in_the_quiet_and_cover_everything():
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, 75 * 16000).astype(np.float32)
    audio[27 * 16000 : 27 * 16000 + 640] = 0  # the quiet spot in the first window's last 5 s
    pieces = _chunks(audio)
    assert all(len(p) <= 30 * 16000 for p in pieces)
    assert sum(len(p) for p in pieces) == len(audio)
    assert len(pieces[0]) == 27 * 16000


def test_empty_audio_is_dropped_without_running_the_model(torch_asr):
    for audio in (np.zeros(0, np.float32), np.zeros(100, np.float32)):
        result = torch_asr.transcribe(audio)
        assert result.text == "" and result.dropped == "empty"


def test_without_cuda_auto_falls_back_to_cpu_and_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu"
    assert pick_dtype(torch.device("cpu")) is torch.float32
    with pytest.raises(ASRDeviceError, match="no CUDA device"):
        pick_device("cuda")
    with pytest.raises(ASRDeviceError, match="needs CUDA"):
        pick_dtype(torch.device("cpu"), "float16")
    assert choose_backend()[:2] == ("faster-whisper", "cpu")
    with pytest.raises(ASRDeviceError):
        make_asr("torch:tiny.en", device="cuda")


def test_backend_prefixes():
    assert split_backend("torch:base") == ("torch", "base")
    assert split_backend("faster-whisper:tiny.en") == ("faster-whisper", "tiny.en")
    assert split_backend("base") == ("auto", "base")
    assert split_backend("Systran/faster-whisper-small") == ("auto", "Systran/faster-whisper-small")


def test_torch_model_dir_rejects_unknown_names():
    from voicebot.models.convert import torch_model_dir

    with pytest.raises(ModelNotFoundError, match="unknown Whisper model"):
        torch_model_dir("no-such-model")


@pytest.mark.e2e
def test_conversion_is_done_once_and_survives_an_interrupted_one(tmp_path, monkeypatch):
    from voicebot.models import convert
    from voicebot.models.resolve import resolve_asr

    source, target = convert.Path(resolve_asr("tiny.en")), tmp_path / "tiny.en-torch"
    leftover = tmp_path / ".tiny.en-torch.tmp-999"  # as a crash mid-conversion leaves it
    leftover.mkdir()
    assert convert.ensure_converted(source, target) == target
    assert not leftover.exists()
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in target.iterdir()
    }

    def fail(*args):
        raise AssertionError("converted twice")

    monkeypatch.setattr(convert, "convert", fail)
    assert convert.ensure_converted(source, target) == target


@pytest.mark.e2e
def test_a_real_call_goes_through_the_shared_engine(caller_audio):
    """The pipeline hands its requests to the engine directly, partials marked as such."""
    import asyncio

    from voicebot.asr.batching import BatchingASR
    from voicebot.pipeline.bot import Bot, BotConfig
    from voicebot.transports.simulated import CallerSegment, SimulatedCaller

    bot = Bot(BotConfig(asr="torch:tiny.en"))
    try:
        assert isinstance(bot.asr, BatchingASR)
        before = bot.asr.stats.requests
        caller = SimulatedCaller([CallerSegment(caller_audio("what is my account balance"))])
        record = asyncio.run(bot.run_call(caller, realtime=False, caller_id="+15551230001"))
    finally:
        bot.close()
    [turn] = [t for t in record.turns if t.role == "caller"]
    assert "balance" in turn.text.lower() and turn.intent == "check_balance"
    assert bot.asr.stats.requests > before
