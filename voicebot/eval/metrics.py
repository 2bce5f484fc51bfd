"""Classification metrics as plain functions over (reference, predicted, confidence) lists."""

from collections import Counter

import numpy as np

from voicebot.dialog.pack import OUT_OF_SCOPE


def per_label(refs: list[str], preds: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support for every label seen in either list."""
    labels = sorted(set(refs) | set(preds))
    pairs = Counter(zip(refs, preds, strict=True))
    out = {}
    for label in labels:
        tp = pairs[(label, label)]
        predicted = sum(n for (_, p), n in pairs.items() if p == label)
        support = sum(n for (r, _), n in pairs.items() if r == label)
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return out


def confusion(refs: list[str], preds: list[str]) -> dict[str, dict[str, int]]:
    """``confusion[reference][predicted] = count`` (only non-zero cells)."""
    table: dict[str, dict[str, int]] = {}
    for (ref, pred), count in sorted(Counter(zip(refs, preds, strict=True)).items()):
        table.setdefault(ref, {})[pred] = count
    return table


def calibration_bins(
    confidences: list[float], correct: list[bool], bins: int = 10
) -> list[tuple[float, float, float, int]]:
    """Equal-width confidence bins: (bin center, accuracy, mean confidence, count), non-empty."""
    conf = np.asarray(confidences, dtype=float)
    hit = np.asarray(correct, dtype=float)
    index = np.clip((conf * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append(((b + 0.5) / bins, hit[mask].mean(), conf[mask].mean(), int(mask.sum())))
    return out


def expected_calibration_error(
    confidences: list[float], correct: list[bool], bins: int = 10
) -> float:
    """ECE: mean |accuracy - confidence| over confidence bins, weighted by bin size."""
    if not confidences:
        return 0.0
    gaps = calibration_bins(confidences, correct, bins)
    return float(sum(n * abs(acc - conf) for _, acc, conf, n in gaps) / len(confidences))


def intent_scores(refs: list[str], preds: list[str], confidences: list[float]) -> dict:
    """Everything the intent report needs, in the contract's key names."""
    labels = per_label(refs, preds)
    in_refs = [label for label in labels if labels[label]["support"] > 0]
    oos = labels.get(OUT_OF_SCOPE, {"precision": 0.0, "recall": 0.0})
    correct = [r == p for r, p in zip(refs, preds, strict=True)]
    return {
        "n": len(refs),
        "accuracy": float(np.mean(correct)) if refs else 0.0,
        "macro_f1": float(np.mean([labels[label]["f1"] for label in in_refs])) if in_refs else 0.0,
        "oos_recall": oos["recall"],
        "oos_precision": oos["precision"],
        "ece": expected_calibration_error(confidences, correct),
        "per_intent": labels,
        "confusion": confusion(refs, preds),
    }
