"""Our numpy BERT encoder gives sentence-transformers' vectors for the packaged MiniLM, and a
model it does not compute exactly goes to sentence-transformers."""

import json
import shutil

import numpy as np
from sentence_transformers import SentenceTransformer

from voicebot.dialog.embeddings import BertMeanEncoder, SentenceEmbedder
from voicebot.models.resolve import resolve_embeddings

TEXTS = [
    "I lost my card yesterday",
    "yes",
    "",
    "what's the ATM fee at other banks?",
    "我的卡丢了 please block it",
    "four five six seven " * 80,  # past the 256-token limit: truncated alike
]


def reference(source: str, texts: list[str]) -> np.ndarray:
    model = SentenceTransformer(source, device="cpu")
    return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def test_the_packaged_minilm_gives_sentence_transformers_vectors():
    source = resolve_embeddings("minilm")
    assert BertMeanEncoder.fits(source)
    embedder = SentenceEmbedder()
    ours = embedder.embed(TEXTS)
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), 384)
    assert np.abs(ours - reference(source, TEXTS)).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # a text's vector does not depend on the batch it came in (padding is masked out)
    assert np.abs(embedder.embed(TEXTS[:1])[0] - ours[0]).max() < 1e-5
    assert embedder.embed([]).shape == (0, 384)


def test_another_pooling_goes_to_sentence_transformers(tmp_path):
    folder = tmp_path / "cls-pooled"
    shutil.copytree(resolve_embeddings("minilm"), folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config |= {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}
    pooling.write_text(json.dumps(config))
    assert not BertMeanEncoder.fits(str(folder))
    ours = SentenceEmbedder(str(folder)).embed(TEXTS[:2])
    assert np.abs(ours - reference(str(folder), TEXTS[:2])).max() < 1e-5
    mean = SentenceEmbedder().embed(TEXTS[:2])
    assert np.abs(ours - mean).max() > 1e-2  # CLS pooling really was used
