"""Build eval/turns/turns.jsonl: the turn-taking set of `voicebot eval turns`.

- ``pause``: real recorded speech (eval/asr/audio: LibriVox, pocketsphinx, MFA's spontaneous
  clips, Common Voice) with one pause of 0.3-1.2 s inserted mid-sentence, at the quietest
  20 ms between words (two places per clip); the turn must not end in it.
- ``complete``: the same clips as they are, and short yes/no answers, and ZIP codes read in
  one breath: they must end soon after the last word.
- ``digits``: ZIP codes (3 + 2), card endings (2 + 2) and phone numbers (3 + 3 + 4) read in
  groups with 0.3-1.2 s pauses between them, by synthetic caller voices over a mu-law line
  (no recorded digit strings ship in any package here); never cut inside.
- ``backchannel`` ("mm-hmm", "okay", "got it"...) and ``interruption`` (real sentences and
  "wait, stop"...) said over the bot's speech.

Pauses are stored as [where, seconds] and inserted by the eval, so the audio files are the
recordings themselves. Deterministic (seeded).

    python scripts/build_turn_eval.py --out eval/turns
"""

import argparse
import json
import random
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from voicebot.audio.frames import FRAME_SAMPLES, SAMPLE_RATE
from voicebot.audio.io import load_audio
from voicebot.audio.pcm import float_to_pcm16
from voicebot.tts.caller_voice import render_caller

ASR_MANIFEST = Path("eval/asr/speech.jsonl")
VOICES = ("piper-low", "piper-high", "mbrola-us1", "flite-slt", "pico-us", "festival-kal")
SKIP = {"audio/mfa-whisper2.flac"}  # whispered: no voiced speech for any VAD
WORDS = "zero one two three four five six seven eight nine".split()  # noqa: SIM905
YES_NO = ("yes", "yes please", "no thank you", "that's right", "correct", "no")
BACKCHANNELS = (
    "mm-hmm",
    "okay",
    "yeah",
    "right",
    "uh-huh",
    "got it",
    "sure",
    "all right",
    "yeah okay",
)
INTERRUPTIONS = ("wait, stop", "no, that's wrong", "hold on a second", "can I talk to a person")


def quiet_points(audio: np.ndarray, count: int, rng: random.Random) -> list[float]:
    """``count`` places between words: the quietest 20 ms frames in the middle of the
    speech (25-80 % of its span), at least 0.4 s apart."""
    frames = audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.flatnonzero(rms > 0.1 * rms.max())
    first, last = int(loud[0]), int(loud[-1])
    lo, hi = first + int(0.25 * (last - first)), first + int(0.8 * (last - first))
    points: list[int] = []
    for index in np.argsort(rms[lo:hi]) + lo:
        if all(abs(int(index) - p) * FRAME_SAMPLES >= 0.4 * SAMPLE_RATE for p in points):
            points.append(int(index))
        if len(points) == count:
            break
    return sorted(round((p + 0.5) * FRAME_SAMPLES / SAMPLE_RATE, 3) for p in points)


def pause_s(rng: random.Random) -> float:
    return round(rng.uniform(0.3, 1.2), 2)


def write(out: Path, name: str, audio: np.ndarray) -> str:
    path = out / "audio" / f"{name}.flac"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), float_to_pcm16(audio), SAMPLE_RATE, subtype="PCM_16")
    return f"audio/{name}.flac"


def groups_audio(groups: list[str], voice: str) -> tuple[np.ndarray, list[float]]:
    """Digit groups said one after the other (0.1 s apart), and where each join is."""
    parts, joins, t = [], [], 0.0
    for k, group in enumerate(groups):
        audio = render_caller(group, voice=voice, line="mulaw")
        parts.append(audio)
        t += len(audio) / SAMPLE_RATE
        if k < len(groups) - 1:
            parts.append(np.zeros(round(0.1 * SAMPLE_RATE), np.float32))
            joins.append(round(t + 0.05, 3))
            t += 0.1
    return np.concatenate(parts), joins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("eval/turns"))
    args = parser.parse_args()
    rng = random.Random(16)
    items: list[dict] = []
    real = [json.loads(line) for line in ASR_MANIFEST.read_text().splitlines() if line.strip()]
    for entry in real:
        if entry["audio"] in SKIP:
            continue
        audio_ref = f"../asr/{entry['audio']}"
        base = {"audio": audio_ref, "text": entry["text"], "source": entry["source"]}
        words = len(entry["text"].split())
        items.append({**base, "kind": "interruption"})
        if entry["text"] in YES_NO:
            items.append({**base, "kind": "complete", "expects": "yes_no"})
        if words < 3:
            continue
        items.append({**base, "kind": "complete", "expects": "request"})
        audio = load_audio(ASR_MANIFEST.parent / entry["audio"])
        for at in quiet_points(audio, 2, rng):
            pauses = [[at, pause_s(rng)]]
            items.append({**base, "kind": "pause", "expects": "request", "pauses": pauses})

    synthetic = "synthetic caller voice {voice} over a mu-law line"
    jobs = [(v, kind) for v in VOICES for kind in ("zip", "last4", "phone", "zip1")]
    for voice, kind in tqdm(jobs, desc="digits", unit="item"):
        if kind == "phone":
            digits = [str(rng.randrange(2, 10))] + [str(rng.randrange(10)) for _ in range(9)]
            split, expects, n = [3, 3, 4], "phone", 10
        else:
            n = 4 if kind == "last4" else 5
            digits = [str(rng.randrange(10)) for _ in range(n)]
            split, expects = ([2, 2] if kind == "last4" else [3, 2]), "digits"
        if kind == "zip1":
            split = [5]
        groups, k = [], 0
        for size in split:
            groups.append(" ".join(WORDS[int(d)] for d in digits[k : k + size]))
            k += size
        audio, joins = groups_audio(groups, voice)
        name = f"{kind}-{voice}"
        item = {
            "audio": write(args.out, name, audio),
            "text": " ".join(groups),
            "source": synthetic.format(voice=voice),
            "kind": "complete" if kind == "zip1" else "digits",
            "expects": expects,
            "digits": n,
        }
        if joins:
            item["pauses"] = [[at, pause_s(rng)] for at in joins]
        items.append(item)

    spoken = [(t, "complete", v) for t in YES_NO for v in VOICES[:2]]
    spoken += [(t, "backchannel", v) for t in BACKCHANNELS for v in VOICES[:3]]
    spoken += [(t, "interruption", v) for t in INTERRUPTIONS for v in VOICES[:2]]
    for text, kind, voice in tqdm(spoken, desc="answers", unit="item"):
        name = f"{kind}-{text.replace(' ', '_').replace(',', '').replace(chr(39), '')}-{voice}"
        item = {
            "audio": write(args.out, name, render_caller(text, voice=voice, line="mulaw")),
            "text": text,
            "source": synthetic.format(voice=voice),
            "kind": kind,
        }
        if kind == "complete":
            item["expects"] = "yes_no"
        items.append(item)
    manifest = args.out / "turns.jsonl"
    manifest.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    counts: dict[str, int] = {}
    for item in items:
        counts[item["kind"]] = counts.get(item["kind"], 0) + 1
    print(f"wrote {manifest}: {len(items)} items {counts}")


if __name__ == "__main__":
    main()
