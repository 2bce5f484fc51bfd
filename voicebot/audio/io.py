"""Reading caller audio files and writing result files without ever leaving half a file."""

import logging
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.resample import resample
from voicebot.errors import AudioInputError, OutputPathError
from voicebot.privacy.storage import private_dir

log = logging.getLogger(__name__)


def load_audio(
    path: str | Path, *, rate: int = SAMPLE_RATE, max_seconds: float | None = None
) -> np.ndarray:
    """Read any soundfile-readable file as mono float32 at ``rate`` (resampled once).

    Stereo is averaged to mono (a telephone recording with both legs mixed still works).
    Raises ``AudioInputError`` with the file name and the reason for anything unusable:
    missing, unreadable or unsupported format, truncated, empty, longer than ``max_seconds``.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioInputError(f"{path}: no such file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioInputError(
            f"{path}: not a readable audio file ({exc}); use WAV, FLAC, OGG or MP3"
        ) from exc
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioInputError(f"{path}: the file holds no audio")
    duration = info.frames / info.samplerate
    if max_seconds is not None and duration > max_seconds:
        raise AudioInputError(
            f"{path}: {_mmss(duration)} of audio is longer than the {_mmss(max_seconds)} "
            "a call may last (raise --max-call-seconds to allow it)"
        )
    try:
        audio, src_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioInputError(f"{path}: audio data is corrupt or truncated ({exc})") from exc
    if len(audio) == 0:
        raise AudioInputError(f"{path}: the file holds no audio (truncated?)")
    declared = _wav_declared_bytes(path)
    if declared is not None and declared > path.stat().st_size:
        log.warning(
            "%s is truncated: its header promises %.1f s more audio than the file holds; "
            "using the %.1f s that are there",
            path,
            (declared - path.stat().st_size) / (info.channels * 2 * info.samplerate),
            duration,
        )
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    return np.ascontiguousarray(resample(mono, src_rate, rate), dtype=np.float32)


def _wav_declared_bytes(path: Path) -> int | None:
    """For a WAV file, the byte offset where its data chunk claims to end; else None."""
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while chunk := fh.read(8):
            if len(chunk) < 8:
                return None
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                return fh.tell() + size
            fh.seek(size + (size & 1), os.SEEK_CUR)
    return None


def write_wav_atomic(path: str | Path, audio: np.ndarray, rate: int) -> Path:
    """Write a WAV (mono ``(n,)`` or multichannel ``(n, ch)``) via a temp file and rename.

    A crash or Ctrl-C mid-write leaves the previous file (or none), never half a file.
    """
    path = Path(path)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        sf.write(tmp, audio, rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file via a temp file and rename (see ``write_wav_atomic``)."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_writable(path: str | Path, what: str) -> Path:
    """Raise ``OutputPathError`` unless ``path`` could be written, creating nothing: call it
    for every output before a long job, not when its result is ready."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path}: the {what} path is a directory; give a file name")
    folder = path.parent
    while not folder.exists():  # written later with its missing folders
        folder = folder.parent
    if not folder.is_dir():
        raise OutputPathError(f"{path}: cannot write the {what}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path}: cannot write the {what}: no permission in {folder}")
    return path


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temp file in the target's directory (so the rename is atomic). It stays owner-only
    (mkstemp's 0600, in folders made 0700): results hold what callers said."""
    private_dir(path.parent)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def _mmss(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"
