"""Small fakes for fast unit tests of the pipeline's control logic.

They stand in for models only where the test is about turn-taking, timing or bookkeeping;
the real models are exercised by the end-to-end tests (``-m e2e``).
"""

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from voicebot.asr.base import ASRContext
from voicebot.audio.frames import SAMPLE_RATE
from voicebot.events import CallerTurn, IntentResult, Reply, SpeechChunk, Transcript


class EnergyVAD:
    """Speech = frame RMS above a threshold; the test audio is tones and silence."""

    vouches = True

    def speech_prob(self, frame: np.ndarray) -> float:
        return float(np.sqrt(np.mean(frame.astype(np.float32) ** 2)) > 500)

    def reset(self) -> None:
        pass


class ScriptedASR:
    """Returns the next scripted text for each *final*; partials get a prefix of it."""

    name = "scripted"

    def __init__(self, texts: list[str], compute_s: float = 0.05) -> None:
        self.texts = texts
        self.compute_s = compute_s
        self.calls: list[float] = []  # audio seconds per call
        self.contexts: list[ASRContext | None] = []  # what each call was told to expect

    def transcribe(self, audio: np.ndarray, context: ASRContext | None = None) -> Transcript:
        time.sleep(self.compute_s)
        self.contexts.append(context)
        self.calls.append(len(audio) / SAMPLE_RATE)
        # Each utterance is a tone whose frequency encodes its index: 300 Hz + 100 Hz * i.
        spectrum = np.abs(np.fft.rfft(audio))
        freq = np.argmax(spectrum) * SAMPLE_RATE / len(audio)
        index = round((freq - 300) / 100)
        text = self.texts[index] if 0 <= index < len(self.texts) else ""
        return Transcript(
            text,
            -0.2,
            0.01,
            len(audio) / SAMPLE_RATE,
            self.compute_s,
            dropped=None if text else "empty",
            raw_text=text,
        )


def tone(index: int, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    """The caller 'says' scripted utterance ``index``: a tone the ScriptedASR decodes."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * (300 + 100 * index) * t)).astype(np.float32)


def keypad_tones(keys: str, press_s: float = 0.1, gap_s: float = 0.1) -> np.ndarray:
    """A caller typing ``keys`` on a phone's keypad: each key's two DTMF tones (ITU-T Q.23),
    as a phone plays them into the line."""
    from voicebot.audio.dtmf import HIGH_HZ, KEYS, LOW_HZ

    t = np.arange(round(press_s * SAMPLE_RATE)) / SAMPLE_RATE
    pieces = []
    for key in keys:
        row = next(i for i, keys_of_row in enumerate(KEYS) if key in keys_of_row)
        low, high = LOW_HZ[row], HIGH_HZ[KEYS[row].index(key)]
        pieces.append(0.25 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)))
        pieces.append(np.zeros(round(gap_s * SAMPLE_RATE)))
    return np.concatenate(pieces).astype(np.float32)


class BeepTTS:
    """One chunk per sentence, ``seconds_per_word`` of a 1 kHz square wave per word."""

    name = "beep"

    def __init__(self, seconds_per_word: float = 0.2, compute_s: float = 0.02) -> None:
        self.seconds_per_word = seconds_per_word
        self.compute_s = compute_s

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        for sentence in text.split(". "):
            time.sleep(self.compute_s)
            n = round(len(sentence.split()) * self.seconds_per_word * SAMPLE_RATE)
            t = np.arange(n) / SAMPLE_RATE
            # A square wave: no sample is zero, so played audio can be counted exactly.
            square = np.where(np.sin(2 * np.pi * 1000 * t) >= 0, 8000, -8000)
            yield SpeechChunk(sentence, square.astype(np.int16))


class EchoDialog:
    """Answers 'you said: <text>'; 'bye' ends the call; two silences end it too."""

    def __init__(self) -> None:
        self.turns: list[str] = []
        self.silences = 0

    def greet(self) -> Reply:
        return Reply("Hello there. How can I help", kind="greeting")

    def respond(self, turn: CallerTurn) -> Reply:
        self.turns.append(turn.text)
        intent = IntentResult("goodbye" if "bye" in turn.text else "echo", 0.9, 0.5)
        if intent.intent == "goodbye":
            return Reply("Goodbye", kind="farewell", intent=intent, end_call=True)
        return Reply(f"You said {turn.text}. Anything else", kind="answer", intent=intent)

    def not_understood(self, turn: CallerTurn) -> Reply:
        self.turns.append(f"<{turn.transcript.dropped}>")
        return Reply("Sorry, say that again", kind="fallback")

    def no_input(self) -> Reply:
        self.silences += 1
        if self.silences >= 2:
            return Reply("Ending the call", kind="reprompt", end_call=True)
        return Reply("Are you there", kind="reprompt")


class EngineScriptedASR(ScriptedASR):
    """``ScriptedASR`` behind a batching-engine interface (``open_call``): requests run on
    the engine's own thread, and every submission is logged with its kind."""

    def __init__(self, texts: list[str], compute_s: float = 0.05) -> None:
        super().__init__(texts, compute_s)
        self.submitted: list[bool] = []  # final flags, in order
        self.closed_calls = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fake-engine")

    def open_call(self) -> "EngineScriptedASR":
        return self

    def submit(
        self, audio: np.ndarray, *, final: bool, context: ASRContext | None = None
    ) -> "Future[Transcript]":
        self.submitted.append(final)
        return self._pool.submit(self.transcribe, audio, context)

    def close(self) -> None:
        self.closed_calls += 1


class NoCalls:
    """A ``Bot`` for servers whose tests make no calls (sign-in, the desk, the limits):
    ``create_app`` only meters its TTS."""

    tts = BeepTTS()
