"""Nearest-example intent classifier on sentence embeddings (all-MiniLM-L6-v2).

The minimal classifier of the core pipeline: a caller text scores each intent by its mean
cosine similarity to that intent's closest training phrases; too weak a best score is
``out_of_scope``. Swapping in a trained, calibrated head means writing another class with the
same ``classify`` method.
"""

import os
import threading

import numpy as np

from voicebot.dialog.pack import OUT_OF_SCOPE, Pack
from voicebot.events import IntentResult
from voicebot.models import resolve_embeddings


class SentenceEmbedder:
    """sentence-transformers model on CPU, loaded from the packaged weights by default."""

    def __init__(self, model: str = "minilm") -> None:
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


class EmbeddingClassifier:
    """Scores intents by the mean similarity of the ``top_k`` nearest training phrases."""

    def __init__(
        self, pack: Pack, embedder: SentenceEmbedder, *, threshold: float = 0.5, top_k: int = 3
    ) -> None:
        self._embedder = embedder
        self._threshold = threshold
        self._top_k = top_k
        self._labels = list(pack.intents)
        examples = [(name, ex) for name, it in pack.intents.items() for ex in it.examples]
        self._example_intent = np.array([self._labels.index(name) for name, _ in examples])
        self._example_vectors = embedder.embed([ex for _, ex in examples])

    def classify(self, text: str) -> IntentResult:
        if not text.strip():
            return IntentResult(OUT_OF_SCOPE, 0.0, 0.0)
        similarities = self._example_vectors @ self._embedder.embed([text[:2000]])[0]
        scores = {}
        for index, label in enumerate(self._labels):
            nearest = np.sort(similarities[self._example_intent == index])[-self._top_k :]
            scores[label] = float(nearest.mean())
        ranked = sorted(scores.values(), reverse=True)
        best = max(scores, key=scores.__getitem__)
        margin = ranked[0] - ranked[1] if len(ranked) > 1 else ranked[0]
        intent = best if ranked[0] >= self._threshold else OUT_OF_SCOPE
        return IntentResult(intent, ranked[0], margin, scores)
