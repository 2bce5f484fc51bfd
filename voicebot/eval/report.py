"""Writing reports people read: the JSON of the eval contract, plus Markdown with plots.

``R.json`` gets ``R.md`` and ``R.<plot>.png`` beside it. Plots use matplotlib's Agg backend
(no display needed).
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from voicebot.audio.io import write_text_atomic
from voicebot.eval.metrics import calibration_bins
from voicebot.privacy.redact import KEEP_KEYS, redact_json

# Item fields that name inputs (file paths, scenario names), not what anyone said.
_ITEM_KEYS = frozenset({"audio", "file", "name", "manifest", "path", "tags"})


def write_json(path: Path, report: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(report, indent=2, ensure_ascii=False, default=float))


def finish(
    report_path: Path,
    report: dict[str, Any],
    issues: list[Any],
    items: list[dict[str, Any]],
    markdown: Callable[[Path, dict[str, Any]], None],
) -> dict[str, Any]:
    """Count what was not evaluated, add the items, write ``R.json`` and ``R.md``. Items are
    masked like every store (``voicebot.privacy``): metrics are computed before, on the
    words as heard; what is written keeps no card number or verification answer."""
    items = redact_json(items, KEEP_KEYS | _ITEM_KEYS)
    report.update(failures=len(issues), issues=[str(i) for i in issues], items=items)
    write_json(report_path, report)
    markdown(report_path, report)
    return report


def save_figure(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_path(report_path: Path, name: str) -> Path:
    return report_path.with_name(f"{report_path.stem}.{name}.png")


def confusion_heatmap(path: Path, table: dict[str, dict[str, int]], title: str) -> Path:
    """Row-normalized confusion matrix (rows: reference, columns: predicted)."""
    labels = sorted(set(table) | {p for row in table.values() for p in row})
    matrix = np.array([[table.get(r, {}).get(p, 0) for p in labels] for r in labels], float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalized = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = max(6.0, 0.38 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for i, j in zip(*np.nonzero(matrix), strict=True):
        color = "white" if normalized[i, j] > 0.5 else "black"
        ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title)
    return save_figure(fig, path)


def reliability_diagram(path: Path, confidences: list[float], correct: list[bool]) -> Path:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    bins = calibration_bins(confidences, correct)
    centers = [b[0] for b in bins]
    accuracy = [b[1] for b in bins]
    counts = [b[3] for b in bins]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(centers, accuracy, width=0.09, alpha=0.7, label="accuracy in bin")
    for x, y, n in zip(centers, accuracy, counts, strict=True):
        ax.text(x, y + 0.02, str(n), ha="center", fontsize=7)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.1)
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def histogram(path: Path, values: list[float], *, xlabel: str, title: str) -> Path:
    """Distribution of ``values`` (e.g. voice-to-voice latency) with p50/p95 marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if values:
        ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="tab:blue", alpha=0.8)
        for q, style in ((50, "-"), (95, "--")):
            x = float(np.percentile(values, q))
            ax.axvline(x, color="tab:red", linestyle=style, label=f"p{q} {x:.0f}")
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    return save_figure(fig, path)


def grouped_bars(
    path: Path, labels: list[str], series: dict[str, list[float]], ylabel: str
) -> Path:
    """One group of bars per label (e.g. WER per item, one bar per mode)."""
    fig, ax = plt.subplots(figsize=(max(7.0, 0.3 * len(labels) + 2), 4.5))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(labels))
    for k, (name, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, labels, rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.legend()
    return save_figure(fig, path)


def percentile(values: list[float], q: float) -> float:
    """``q``-th percentile, or 0.0 for no values (a report field must stay a number)."""
    return float(np.percentile(values, q)) if values else 0.0


def write_markdown(report_path: Path, sections: list[str], issues: list[str]) -> Path:
    """``R.md`` beside ``R.json``: the sections, then every input that was not evaluated."""
    if issues:
        sections = [*sections, "## Not evaluated", "\n".join(f"- {i}" for i in issues)]
    return write_text_atomic(report_path.with_suffix(".md"), "\n\n".join(sections) + "\n")
