"""Render the bundled example caller recordings in examples/ (run once; outputs are committed).

Run them with `voicebot call examples/NAME.wav --caller-id +15551230001` (the demo customer
whose ZIP code, 94107, the caller says when asked).

The caller is the packaged Piper voice shifted in pitch and tempo and passed through an 8 kHz
mu-law phone line, so it sounds unlike the bot. Pauses between the caller's sentences are
long enough for the bot to answer, as when a person waits for the reply.

    .venv/bin/python scripts/make_examples.py
"""

from pathlib import Path

import numpy as np

from voicebot.audio.io import write_wav_atomic
from voicebot.audio.pcm import float_to_pcm16
from voicebot.audio.resample import resample
from voicebot.tts.caller_voice import render_caller
from voicebot.tts.piper import PiperTTS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# Each example: list of (caller sentence, seconds of silence after it).
CALLS = {
    "lost_card_call": [
        ("Hi, I think I lost my card yesterday.", 6.0),
        ("Nine four one zero seven.", 11.0),
        ("Four five six seven.", 5.5),
        ("Yes, please.", 11.0),
        ("Thanks, that's all. Goodbye.", 1.0),
    ],
    "payment_call": [
        ("Hi there, um, when is my credit card payment due?", 6.0),
        ("Nine four one zero seven.", 14.0),
        ("Okay, I'd like to make a payment.", 6.0),
        ("Two hundred dollars.", 7.5),
        ("Yes please.", 8.5),
        ("Great, that's everything. Bye.", 1.0),
    ],
    "agent_request_call": [
        ("Hello, I was charged twice for the same thing at a restaurant.", 11.0),
        ("This is ridiculous. Can I just talk to a real person please?", 1.0),
    ],
}


def main() -> None:
    tts = PiperTTS()
    for name, turns in CALLS.items():
        parts = []
        for text, pause in turns:
            parts.append(render_caller(text, voice="piper-low", piper=tts))
            parts.append(np.zeros(round(pause * 16000), np.float32))
        # Stored as a telephone recording would be: 8 kHz, 16-bit.
        audio = resample(np.concatenate(parts), 16000, 8000)
        path = write_wav_atomic(EXAMPLES / f"{name}.wav", float_to_pcm16(audio), 8000)
        print(f"wrote {path} ({len(audio) / 8000:.1f} s)")


if __name__ == "__main__":
    main()
