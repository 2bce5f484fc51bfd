"""Model resolution and preparation: packaged weights by name (offline), a local path, or a hub id.

Every default works offline from pinned packages; online users may pass a hub id instead.
"""

from voicebot.models.inventory import ModelStatus, list_models, model_info, prepare
from voicebot.models.registry import MODELS, ModelSpec
from voicebot.models.resolve import resolve_asr, resolve_embeddings, resolve_piper_voice

__all__ = [
    "MODELS",
    "ModelSpec",
    "ModelStatus",
    "list_models",
    "model_info",
    "prepare",
    "resolve_asr",
    "resolve_embeddings",
    "resolve_piper_voice",
]
