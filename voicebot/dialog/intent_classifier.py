"""Intent classifier: sentence embeddings + a trained logistic-regression head.

Why this shape: MiniLM embeddings already separate paraphrases well, so a linear head trained
on a pack's ~25 phrases per intent is accurate, trains in a second and classifies in ~10 ms.
Two additions make its confidence usable for hand-off decisions:

- **out of scope**: generic background phrases (``intents/out_of_scope.yaml``) are trained as
  an extra class, and a caller text whose calibrated confidence is below ``threshold`` is
  out of scope as well;
- **calibration**: the head's logits are divided by a temperature fitted on cross-validated
  predictions (temperature scaling), so "0.8" means right about 80% of the time.

Texts are compared as words only (``intent_text``): Whisper writes "Yes, please send it.",
the training phrases are written "yes please send it", and MiniLM's embedding moves enough
with the punctuation to drop a clear yes below the out-of-scope floor.

Trained heads are cached by a hash of the pack, the background set and the embedder, so they
are retrained exactly when one of them changes.
"""

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from voicebot.dialog.embeddings import Embedder
from voicebot.dialog.pack import OUT_OF_SCOPE, PACKS_DIR, Pack
from voicebot.events import IntentResult
from voicebot.models.cache import cache_dir

log = logging.getLogger(__name__)
# The out-of-scope threshold's range, whatever the cross-validation says.
THRESHOLDS = (0.2, 0.7)

BACKGROUND_FILE = PACKS_DIR / "out_of_scope.yaml"
_HEAD_VERSION = 2  # bump when training changes, to invalidate cached heads
_MAX_CHARS = 1000  # a caller turn longer than this is noise for intent purposes
# Anything but letters, digits and apostrophes inside words ("don't", not 'quoted').
_NOT_WORDS = re.compile(r"[^\w\s']|_|(?<!\w)'|'(?!\w)")


def intent_text(text: str) -> str:
    """What the classifier sees of a text: lower-case words, no punctuation, one space."""
    return " ".join(_NOT_WORDS.sub(" ", text[: _MAX_CHARS * 2].lower()).split())[:_MAX_CHARS]


@dataclass(frozen=True)
class IntentHead:
    """The trained part: everything ``classify`` needs besides the embedder."""

    labels: tuple[str, ...]  # includes OUT_OF_SCOPE
    weights: np.ndarray  # (dim, classes)
    bias: np.ndarray  # (classes,)
    temperature: float
    threshold: float  # calibrated confidence below which a text is out of scope
    cv_accuracy: float  # cross-validated accuracy on the training phrases

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            labels=np.array(self.labels),
            weights=self.weights,
            bias=self.bias,
            scalars=np.array([self.temperature, self.threshold, self.cv_accuracy]),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "IntentHead":
        data = np.load(path)
        temperature, threshold, cv_accuracy = data["scalars"].tolist()
        return cls(
            tuple(data["labels"].tolist()),
            data["weights"],
            data["bias"],
            temperature,
            threshold,
            cv_accuracy,
        )


def background_examples(path: Path = BACKGROUND_FILE) -> list[str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return [str(e) for e in data.get("examples", [])]


def head_key(pack: Pack, embedder_name: str, background: list[str]) -> str:
    """Identity of a training run: changes whenever anything that shapes the head changes."""
    payload = {
        "version": _HEAD_VERSION,
        "embedder": embedder_name,
        "intents": {n: list(i.examples) for n, i in sorted(pack.intents.items())},
        "background": background,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def train_head(
    examples: list[str], labels: list[str], embedder: Embedder, *, folds: int = 5
) -> IntentHead:
    """Fit the head, its temperature and its out-of-scope threshold."""
    x = embedder.embed([intent_text(e) for e in examples])
    y = np.array(labels)
    model = LogisticRegression(C=10.0, max_iter=2000)
    folds = min(folds, int(min(np.unique(y, return_counts=True)[1])))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    cv_logits = cross_val_predict(model, x, y, cv=splitter, method="decision_function")
    model.fit(x, y)
    classes = list(model.classes_)
    target = np.array([classes.index(label) for label in y])

    def nll(temperature: float) -> float:
        return float(-np.mean(_log_softmax(cv_logits / temperature)[np.arange(len(y)), target]))

    temperature = float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)
    probs = np.exp(_log_softmax(cv_logits / temperature))
    predicted = probs.argmax(axis=1)
    in_scope = y != OUT_OF_SCOPE
    # Accept 95% of correctly classified in-scope phrases (cross-validated): below that
    # confidence, a caller text is more likely out of scope than a paraphrase we know.
    correct = in_scope & (predicted == target)
    low, high = THRESHOLDS
    if correct.any():
        threshold = float(np.clip(np.percentile(probs.max(axis=1)[correct], 5), low, high))
    else:  # too few examples to tell the intents apart: the strictest threshold
        log.warning("no example is classified right by the others: out-of-scope below %g", high)
        threshold = high
    return IntentHead(
        labels=tuple(classes),
        weights=model.coef_.T.astype(np.float32),
        bias=model.intercept_.astype(np.float32),
        temperature=temperature,
        threshold=threshold,
        cv_accuracy=float(np.mean(predicted == target)),
    )


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class IntentClassifier:
    """``classify(text) -> IntentResult`` for one pack (the dialog's ``IntentClassifier``)."""

    def __init__(self, pack: Pack, embedder: Embedder, head: IntentHead) -> None:
        self.pack = pack
        self.head = head
        self._embedder = embedder

    @classmethod
    def for_pack(
        cls, pack: Pack, embedder: Embedder, *, retrain: bool = False
    ) -> "IntentClassifier":
        """Load the cached head for this pack, training it first if the pack changed."""
        background = background_examples()
        path = (
            cache_dir() / "intents" / f"{pack.name}-{head_key(pack, embedder.name, background)}.npz"
        )
        if path.exists() and not retrain:
            return cls(pack, embedder, IntentHead.load(path))
        examples = [e for intent in pack.intents.values() for e in intent.examples]
        labels = [name for name, intent in pack.intents.items() for _ in intent.examples]
        head = train_head(
            examples + background, labels + [OUT_OF_SCOPE] * len(background), embedder
        )
        head.save(path)
        log.info("trained intent head for %s: cv accuracy %.3f", pack.name, head.cv_accuracy)
        return cls(pack, embedder, head)

    @property
    def embedder(self) -> Embedder:
        """The sentence embedder it classifies with (agent assist matches FAQ facts too)."""
        return self._embedder

    def classify(self, text: str) -> IntentResult:
        text = intent_text(text)
        if not text:
            return IntentResult(OUT_OF_SCOPE, 0.0, 0.0)
        logits = self._embedder.embed([text])[0] @ self.head.weights + self.head.bias
        probs = np.exp(_log_softmax(logits / self.head.temperature))
        order = np.argsort(probs)[::-1]
        best, second = self.head.labels[order[0]], float(probs[order[1]])
        confidence = float(probs[order[0]])
        scores = {label: float(p) for label, p in zip(self.head.labels, probs, strict=True)}
        if best == OUT_OF_SCOPE or confidence < self.head.threshold:
            best = OUT_OF_SCOPE
        return IntentResult(best, confidence, confidence - second, scores)
