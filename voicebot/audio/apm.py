"""Caller audio clean-up with WebRTC's audio processing (livekit ``rtc.AudioProcessingModule``).

On a speakerphone the caller's microphone picks up the bot's own voice; without echo
cancellation the VAD hears it as the caller talking and the bot interrupts itself. The echo
canceller subtracts the bot's audio (the far end, fed as it is sent) from what comes back.
Noise suppression keeps street and office noise from opening turns.

The module works on 10 ms frames, so each 20 ms pipeline frame is processed as two halves.
"""

from dataclasses import dataclass

import numpy as np

from voicebot.audio.frames import SAMPLE_RATE

_HALF = SAMPLE_RATE // 100  # 10 ms


@dataclass(frozen=True)
class AudioCleanup:
    """Which processing a call's caller audio gets (all off: the audio is untouched)."""

    echo_cancellation: bool = False
    noise_suppression: bool = False
    # The bot audio's round trip to the caller's loudspeaker and back through the line, as a
    # starting hint for the canceller's own delay estimator.
    echo_delay_ms: int = 120

    @property
    def enabled(self) -> bool:
        return self.echo_cancellation or self.noise_suppression

    def processor(self) -> "CallerAudioProcessor | None":
        """A processor for one call (the canceller adapts to that call's echo path)."""
        return CallerAudioProcessor(self) if self.enabled else None


class CallerAudioProcessor:
    """One call's echo canceller / noise suppressor over 16 kHz PCM16 frames."""

    def __init__(self, config: AudioCleanup) -> None:
        from livekit import rtc  # imported here: only calls that use it pay for the FFI load

        self._rtc = rtc
        self._config = config
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=config.echo_cancellation,
            noise_suppression=config.noise_suppression,
            high_pass_filter=config.echo_cancellation or config.noise_suppression,
        )

    def far_end(self, pcm: np.ndarray) -> None:
        """The bot audio being played to the caller: the reference the canceller removes."""
        if self._config.echo_cancellation:
            for half in (pcm[:_HALF], pcm[_HALF:]):
                self._apm.process_reverse_stream(self._frame(half))

    def near_end(self, pcm: np.ndarray) -> np.ndarray:
        """The caller's audio with the bot's echo and background noise taken out."""
        out = []
        for half in (pcm[:_HALF], pcm[_HALF:]):
            frame = self._frame(half)
            if self._config.echo_cancellation:
                self._apm.set_stream_delay_ms(self._config.echo_delay_ms)
            self._apm.process_stream(frame)
            out.append(np.frombuffer(frame.data, dtype=np.int16))
        return np.concatenate(out)

    def _frame(self, pcm: np.ndarray):  # -> rtc.AudioFrame
        data = np.ascontiguousarray(pcm, dtype=np.int16).tobytes()
        return self._rtc.AudioFrame(data, SAMPLE_RATE, 1, len(pcm))
