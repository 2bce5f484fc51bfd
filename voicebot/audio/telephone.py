"""Telephone lines for simulated callers: named, composable line conditions.

Callers reach a contact center over the phone network, so test and eval audio goes through
what a real line does to it, in the order it happens:

1. the caller's room and handset, in the line's 8 kHz band: background noise at a measured
   signal-to-noise ratio (``white``; ``babble``, real recorded voices talking at once;
   ``street``, traffic rumble with cars passing; ``hum``, mains buzz), then a muffled
   handset (a low-pass) and an overdriven microphone (clipping);
2. the codec: G.711 mu-law or A-law (``none`` keeps linear PCM, still narrowband);
3. the network: a share of the 20 ms packets lost, and concealed by the receiver as
   G.711 Appendix I does (pitch-period waveform repetition with attenuation, overlap-added
   at both edges of the gap), never left as silence.

A condition is a ``LineCondition``, written as named stages joined by ``+``:
``line("alaw+babble-15+loss-2")`` is A-law with babble at 15 dB SNR and 2 % packet loss.
Everything is deterministic for a given ``seed``.
"""

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import soundfile as sf

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.pcm import (
    alaw_decode,
    alaw_encode,
    float_to_pcm16,
    mulaw_decode,
    mulaw_encode,
    pcm16_to_float,
)
from voicebot.audio.resample import resample
from voicebot.errors import CallerAudioError

CODECS = ("mulaw", "alaw", "none")
NOISES = ("white", "babble", "street", "hum", "music")
NARROW_RATE = 8000
PACKET_SAMPLES = NARROW_RATE * 20 // 1000  # one 20 ms RTP packet of G.711


@dataclass(frozen=True)
class LineCondition:
    """What one phone line does to a caller's voice. ``None`` fields leave that stage out."""

    codec: str = "mulaw"
    noise: str | None = None  # one of NOISES
    snr_db: float | None = None  # noise level: speech (active level) over noise, in dB
    loss: float = 0.0  # share of 20 ms packets lost, concealed by the receiver
    muffle_hz: float | None = None  # a muffled handset: low-pass at this frequency
    clip: float | None = None  # an overdriven microphone: clipped at this share of the peak

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise CallerAudioError(
                f"unknown codec {self.codec!r}; choose one of {', '.join(CODECS)}"
            )
        if self.noise is not None and self.noise not in NOISES:
            raise CallerAudioError(
                f"unknown noise {self.noise!r}; choose one of {', '.join(NOISES)}"
            )
        if (self.noise is None) != (self.snr_db is None):
            raise CallerAudioError("noise and snr_db go together: a kind of noise at a level")
        if not 0.0 <= self.loss < 0.5:
            raise CallerAudioError(f"packet loss {self.loss} must be a share in [0, 0.5)")
        if self.clip is not None and not 0.0 < self.clip <= 1.0:
            raise CallerAudioError(f"clip {self.clip} must be a share of the peak in (0, 1]")
        if self.muffle_hz is not None and not 100 < self.muffle_hz < NARROW_RATE / 2:
            raise CallerAudioError(
                f"muffle_hz {self.muffle_hz} must lie within the 8 kHz line's band"
            )

    def apply(self, audio: np.ndarray, *, rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
        """``audio`` (float32 mono at ``rate``) as the far end hears it, back at ``rate``."""
        rng = np.random.default_rng(seed)
        narrow = resample(audio.astype(np.float32), rate, NARROW_RATE)
        if self.noise is not None and self.snr_db is not None:
            narrow = add_noise(narrow, self.noise, self.snr_db, rng)
        if self.muffle_hz is not None:
            narrow = _filtered(narrow, 4, self.muffle_hz, "low").astype(np.float32)
        if self.clip is not None:
            peak = float(np.max(np.abs(narrow))) if len(narrow) else 0.0
            limit = self.clip * peak
            if limit > 0:  # flattened at the limit, then as loud as the mic's full scale
                narrow = np.clip(narrow, -limit, limit) * np.float32(peak / limit)
        pcm = float_to_pcm16(narrow)
        if self.codec == "mulaw":
            pcm = mulaw_decode(mulaw_encode(pcm))
        elif self.codec == "alaw":
            pcm = alaw_decode(alaw_encode(pcm))
        decoded = pcm16_to_float(pcm)
        if self.loss > 0:
            decoded = conceal(decoded, lose_packets(len(decoded), self.loss, rng))
        return resample(decoded, NARROW_RATE, rate)


# Named stages; ``line()`` also reads ``<noise>-<snr>`` (``babble-12``) and
# ``loss-<percent>`` (``loss-1.5``) for any level.
STAGES: dict[str, dict[str, object]] = {
    "mulaw": {"codec": "mulaw"},
    "alaw": {"codec": "alaw"},
    "linear": {"codec": "none"},
    "muffled": {"muffle_hz": 1500.0},
    "clipped": {"clip": 0.25},
}
_LEVELLED = re.compile(r"^(?P<kind>[a-z]+)-(?P<value>\d+(?:\.\d+)?)$")


def line(spec: str) -> LineCondition:
    """A condition from stage names joined by ``+`` (``"alaw+street-10+loss-2"``), over a
    clean mu-law line; where two stages set the same thing, the later one wins."""
    settings: dict[str, object] = {}
    for name in spec.split("+"):
        settings |= _stage(name.strip())
    return LineCondition(**settings)


def _stage(name: str) -> dict[str, object]:
    if name in STAGES:
        return STAGES[name]
    match = _LEVELLED.match(name)
    if match and match["kind"] in NOISES:
        return {"noise": match["kind"], "snr_db": float(match["value"])}
    if match and match["kind"] == "loss":
        return {"loss": float(match["value"]) / 100}
    known = ", ".join([*STAGES, *(f"{n}-SNR" for n in NOISES), "loss-PERCENT"])
    raise CallerAudioError(f"unknown line condition {name!r}; use {known}, joined with '+'")


def telephone_channel(
    audio: np.ndarray,
    *,
    rate: int = SAMPLE_RATE,
    codec: str = "mulaw",
    snr_db: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """``audio`` after a plain 8 kHz phone line (white noise at ``snr_db`` if given)."""
    noise = None if snr_db is None else "white"
    condition = LineCondition(codec=codec, noise=noise, snr_db=snr_db)
    return condition.apply(audio, rate=rate, seed=seed)


# --- noise -------------------------------------------------------------------------------


def active_level(audio: np.ndarray) -> float:
    """RMS of the speech, pauses left out: over the 20 ms packets within 30 dB of the
    loudest (a simple form of ITU-T P.56's active speech level), so a SNR means the same
    for a short "yes" as for a long sentence with pauses."""
    n = len(audio) // PACKET_SAMPLES * PACKET_SAMPLES
    if n == 0:
        return float(np.sqrt(np.mean(audio**2))) if len(audio) else 0.0
    power = np.mean(audio[:n].reshape(-1, PACKET_SAMPLES).astype(np.float64) ** 2, axis=1)
    return float(np.sqrt(np.mean(power[power >= power.max() * 1e-3])))


def add_noise(speech: np.ndarray, kind: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``speech`` (8 kHz) plus ``kind`` of noise scaled so that active speech level over
    noise RMS is exactly ``snr_db``."""
    noise = noise_signal(kind, len(speech), rng)
    level = active_level(speech) or 1e-4
    rms = float(np.sqrt(np.mean(noise.astype(np.float64) ** 2))) or 1.0
    return (speech + noise * (level / 10 ** (snr_db / 20) / rms)).astype(np.float32)


def noise_signal(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples (8 kHz) of one kind of background noise, at no particular level."""
    if n == 0:
        return np.zeros(0, np.float32)
    if kind == "white":
        return rng.normal(0.0, 1.0, n).astype(np.float32)
    if kind == "babble":
        return _babble(n, rng)
    if kind == "street":
        return _street(n, rng)
    if kind == "hum":
        return _hum(n, rng)
    if kind == "music":
        return _music(n, rng)
    raise CallerAudioError(f"unknown noise {kind!r}; choose one of {', '.join(NOISES)}")


@cache
def _babble_recording() -> np.ndarray:
    """Six real talkers at once (``scripts/build_babble.py`` made it from real speech)."""
    with resources.files("voicebot.audio").joinpath("noise/babble.flac").open("rb") as file:
        audio, rate = sf.read(file, dtype="float32")
    assert rate == NARROW_RATE, "babble.flac is stored at the line's rate"
    return audio


def _babble(n: int, rng: np.random.Generator) -> np.ndarray:
    recording = _babble_recording()
    start = int(rng.integers(len(recording)))
    return np.resize(np.roll(recording, -start), n)


def _street(n: int, rng: np.random.Generator) -> np.ndarray:
    """Traffic: a low rumble (brown noise) that swells as cars pass, over a broadband hiss
    of tyres and wind."""
    t = np.arange(n) / NARROW_RATE
    brown = np.cumsum(rng.normal(0.0, 1.0, n))
    rumble = _filtered(brown, 2, [30, 600], "band")
    rumble /= np.std(rumble) or 1.0
    swell = np.full(n, 0.3)
    duration = n / NARROW_RATE
    for _ in range(max(1, round(duration / 2.5))):  # a car passing every 2.5 s or so
        centre, width = rng.uniform(0, duration), rng.uniform(0.4, 1.2)
        swell += rng.uniform(0.6, 1.5) * np.exp(-0.5 * ((t - centre) / width) ** 2)
    hiss = _filtered(rng.normal(0, 1, n), 1, 1200, "low")
    hiss /= np.std(hiss) or 1.0
    return (rumble * swell + 0.4 * hiss).astype(np.float32)


def _hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains buzz of a bad line or a charger: 60 Hz and its harmonics up to 1 kHz, plus a
    little hiss."""
    t = np.arange(n) / NARROW_RATE
    phase = rng.uniform(0, 2 * np.pi, 17)
    buzz = sum(np.sin(2 * np.pi * 60 * k * t + phase[k - 1]) / k for k in range(1, 17))
    return (buzz + 0.05 * rng.normal(0.0, 1.0, n)).astype(np.float32)


def _music(n: int, rng: np.random.Generator) -> np.ndarray:
    """Hold music, or a radio near the caller: plucked piano-like chords (C G Am F) under a
    melody, half a second a note, from a random point of the tune: tonal, rhythmic and in
    the voice band."""
    chords = [
        [261.6, 329.6, 392.0],
        [196.0, 246.9, 293.7],
        [220.0, 261.6, 329.6],
        [174.6, 220.0, 261.6],
    ]
    melody = [523.3, 587.3, 659.3, 784.0, 659.3, 587.3, 523.3, 493.9]
    out, beat = np.zeros(n), int(0.5 * NARROW_RATE)
    first = int(rng.integers(16))
    for index, start in enumerate(range(0, n, beat), start=first):
        length = min(int(1.8 * beat), n - start)
        t = np.arange(length) / NARROW_RATE
        for freq in [*chords[(index // 4) % 4], melody[index % 8]]:
            for harmonic in range(1, 5):
                out[start : start + length] += (
                    np.exp(-3 * t) * np.sin(2 * np.pi * freq * harmonic * t) / harmonic**1.5
                )
    return out.astype(np.float32)


# --- packet loss and its concealment -------------------------------------------------------

# G.711 Appendix I at 8 kHz: pitch searched between 40 (200 Hz) and 120 samples (66 Hz) over
# the last 20 ms; 3.25 of the longest periods of history; 10 ms concealment steps.
_PITCH_MIN, _PITCH_MAX = 40, 120
_CORR = 160
_HISTORY = 390
_STEP = 80


def lose_packets(n_samples: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Which 20 ms packets are lost: ``round(share * packets)`` of them, at random places
    (at least one when a share is asked for and there are packets to lose)."""
    packets = -(-n_samples // PACKET_SAMPLES)
    count = min(packets, max(1, round(share * packets))) if share > 0 and packets else 0
    lost = np.zeros(packets, bool)
    lost[rng.choice(packets, size=count, replace=False)] = True
    return lost


def conceal(audio: np.ndarray, lost: np.ndarray) -> np.ndarray:
    """``audio`` (8 kHz) with the ``lost`` 20 ms packets replaced as a G.711 receiver does.

    Each gap is filled by repeating the last pitch period of what came before (two, then
    three periods from the second and third 10 ms on, so a long gap does not buzz), faded
    by 20 % per 10 ms after the first 10 ms (silent after 60 ms), and overlap-added with
    the real signal at both edges: a quarter period at the start, a quarter period plus
    4 ms per extra 10 ms lost (at most 10 ms) at the end.
    """
    out = audio.astype(np.float32).copy()
    index = 0
    while index < len(lost):
        if not lost[index]:
            index += 1
            continue
        end = index
        while end < len(lost) and lost[end]:
            end += 1
        start = index * PACKET_SAMPLES
        _conceal_gap(out, start, min(end * PACKET_SAMPLES, len(out)) - start)
        index = end
    return out


def _conceal_gap(out: np.ndarray, start: int, length: int) -> None:
    history = out[max(0, start - _HISTORY) : start].copy()
    if len(history) < _CORR + _PITCH_MAX:  # nothing to repeat yet: the line is silent
        out[start : start + length] = 0.0
        return
    pitch = _pitch_period(history)
    quarter = pitch // 4
    # Start: the last quarter period of real signal fades into the quarter period that
    # preceded the period about to be repeated, so the repetition joins without a click.
    fade_in = np.linspace(0.0, 1.0, quarter + 2, dtype=np.float32)[1:-1]
    before = history[-pitch - quarter : -pitch]
    history[-quarter:] = history[-quarter:] * (1 - fade_in) + before * fade_in
    out[start - quarter : start] = history[-quarter:]
    gaps_10ms = -(-length // _STEP)
    tail = min(quarter + 32 * (gaps_10ms - 1), _STEP)
    synthetic = _repeat_periods(history, pitch, length + tail)
    gain = np.clip(1.0 - 0.2 * (np.arange(length + tail) - _STEP) / _STEP, 0.0, 1.0)
    synthetic *= gain.astype(np.float32)
    out[start : start + length] = synthetic[:length]
    # End: the concealment fades out while the first real samples after the gap fade in.
    after = min(tail, len(out) - start - length)
    if after > 0:
        ramp = np.linspace(0.0, 1.0, after + 2, dtype=np.float32)[1:-1]
        edge = slice(start + length, start + length + after)
        out[edge] = synthetic[length : length + after] * (1 - ramp) + out[edge] * ramp


def _pitch_period(history: np.ndarray) -> int:
    """The lag (40-120 samples) at which the last 20 ms best matches what came before."""
    target = history[-_CORR:].astype(np.float64)
    best, best_score = _PITCH_MIN, -np.inf
    for lag in range(_PITCH_MIN, _PITCH_MAX + 1):
        candidate = history[-_CORR - lag : -lag].astype(np.float64)
        energy = float(np.dot(candidate, candidate))
        score = float(np.dot(target, candidate)) / np.sqrt(energy) if energy > 0 else -np.inf
        if score > best_score:
            best, best_score = lag, score
    return best


def _repeat_periods(history: np.ndarray, pitch: int, n: int) -> np.ndarray:
    """``n`` samples continuing ``history`` by cycling its last pitch period; from 10 ms on
    the last two periods, from 20 ms the last three (as far as history holds them), each
    widening overlap-added over a quarter period."""
    quarter = max(1, pitch // 4)
    out = np.empty(n, np.float32)
    periods, phase = 1, 0
    for position in range(0, n, _STEP):
        want = min(1 + position // _STEP, 3, len(history) // pitch)
        chunk = min(_STEP, n - position)
        if want > periods:  # widen the loop, cross-fading the old continuation into the new
            old = _cycle(history, pitch * periods, phase, quarter)
            periods = want
            phase = phase % pitch  # the same point of the period, one period further back
            new = _cycle(history, pitch * periods, phase, quarter)
            ramp = np.linspace(0.0, 1.0, quarter + 2, dtype=np.float32)[1:-1]
            blend = old * (1 - ramp) + new * ramp
            take = min(quarter, chunk)
            out[position : position + take] = blend[:take]
            phase = (phase + take) % (pitch * periods)
            rest = chunk - take
            out[position + take : position + chunk] = _cycle(history, pitch * periods, phase, rest)
            phase = (phase + rest) % (pitch * periods)
        else:
            out[position : position + chunk] = _cycle(history, pitch * periods, phase, chunk)
            phase = (phase + chunk) % (pitch * periods)
    return out


def _cycle(history: np.ndarray, span: int, phase: int, n: int) -> np.ndarray:
    """``n`` samples of the last ``span`` samples of ``history`` played in a loop from ``phase``."""
    loop = history[-span:]
    return loop[(phase + np.arange(n)) % span].astype(np.float32)


def _filtered(x: np.ndarray, order: int, cutoff: float | list[float], kind: str) -> np.ndarray:
    """A Butterworth filter at the narrowband rate. scipy.signal is imported here: it takes
    about 2 s, which every command that imports this module would otherwise pay."""
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(order, cutoff, btype=kind, fs=NARROW_RATE, output="sos"), x)
