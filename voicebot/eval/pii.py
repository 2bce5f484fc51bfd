"""`voicebot eval pii`: does redaction catch what callers say, and leave the rest alone?

Manifest (JSONL), one caller utterance a line, or a few turns of one call:

    {"text": "my card number is 4111 1111 1111 1111", "pii": [{"type": "card",
     "text": "4111 1111 1111 1111"}]}
    {"turns": ["it's 4111 1111", "1111 1111"], "pii": [{"type": "card", "turn": 0,
     "text": "4111 1111"}, {"type": "card", "turn": 1, "text": "1111 1111"}]}
    {"text": "nine four one oh seven", "context": {"kind": "digits", "slot": "verification",
     "sensitive": true}, "pii": [{"type": "verification", "text": "nine four one oh seven"}]}
    {"text": "block the card ending in 4567", "pii": []}

``type`` is a ``voicebot.privacy.redact.PII`` kind; ``text`` the span as written (its first
occurrence in the turn); ``context`` the question the caller is answering. Turns go through
one ``CallRedactor`` in order, as in a call. A span is caught when masks cover every one of
its characters; a mask that covers no span is a false positive. Report: ``recall`` per type
and overall, ``precision`` over masks, ``clean_untouched`` (share of lines without PII left
exactly as they were), ``targets`` and whether they are met. The report names what was
missed by type and turn only: a missed span is PII, and reports are stores too.
"""

from pathlib import Path
from typing import Any

from tqdm import tqdm

from voicebot.eval.manifest import Issue, read_jsonl
from voicebot.eval.report import finish, markdown_table, write_markdown
from voicebot.events import Expect, Expectation
from voicebot.privacy.redact import PII, CallRedactor, Finding

# Issue 14's targets: recall for the kinds whose leak does the most harm, precision overall.
TARGETS = {"card": 0.99, "security_code": 0.99, "ssn": 0.99, "phone": 0.99, "precision": 0.95}


def evaluate_pii(manifest: Path, report_path: Path) -> dict[str, Any]:
    entries, issues = read_jsonl(manifest, ())
    caught: dict[str, list[bool]] = {}
    masks = true_masks = clean = clean_kept = 0
    items = []
    for entry in tqdm(entries, desc="pii", unit="line", leave=False):
        where = f"{manifest}:{entry.line}"
        parsed = _parse(entry.data)
        if isinstance(parsed, str):
            issues.append(Issue(where, parsed))
            continue
        turns, context, golds = parsed
        redactor = CallRedactor()
        findings: list[tuple[Finding, ...]] = []
        texts: list[str] = []
        for text in turns:
            now, before = redactor.redact(text, context)
            if before is not None:
                findings[-1], texts[-1] = before.findings, before.text
            findings.append(now.findings)
            texts.append(now.text)
        missed = []
        for kind, turn, start, end in golds:
            covered = all(
                any(f.start <= i < f.end for f in findings[turn])
                for i in range(start, end)
                if not turns[turn][i].isspace()
            )
            caught.setdefault(kind, []).append(covered)
            if not covered:
                missed.append({"type": kind, "turn": turn})
        false = [
            {"turn": n, "text": turns[n][f.start : f.end], "as": f.kind.value}
            for n, found in enumerate(findings)
            for f in found
            if not any(t == n and f.start < e and s < f.end for _, t, s, e in golds)
        ]
        count = sum(len(f) for f in findings)
        masks += count
        true_masks += count - len(false)
        if not golds:
            clean += 1
            clean_kept += texts == turns
        items.append({"line": entry.line, "redacted": texts, "missed": missed, "false": false})
    recall = {kind: sum(hits) / len(hits) for kind, hits in sorted(caught.items())}
    every = [hit for hits in caught.values() for hit in hits]
    report: dict[str, Any] = {
        "n": len(items),
        "spans": {kind: len(hits) for kind, hits in sorted(caught.items())},
        "recall": recall,
        "recall_all": sum(every) / len(every) if every else 1.0,
        "precision": true_masks / masks if masks else 1.0,
        "clean_n": clean,
        "clean_untouched": clean_kept / clean if clean else 1.0,
        "manifest": str(manifest),
    }
    report["targets"] = TARGETS
    report["meets_targets"] = report["precision"] >= TARGETS["precision"] and all(
        recall.get(kind, 1.0) >= target for kind, target in TARGETS.items() if kind != "precision"
    )
    return finish(report_path, report, issues, items, _write_markdown)


def _parse(data: dict[str, Any]) -> tuple[list[str], Expectation, list[tuple]] | str:
    """(turns, context, gold spans as (type, turn, start, end)), or what is wrong."""
    turns = data.get("turns", [data.get("text")])
    if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns) or not turns:
        return "needs 'text' (a string) or 'turns' (a list of strings)"
    raw = data.get("context") or {}
    try:
        context = Expectation(
            Expect(raw.get("kind", "request")),
            slot=raw.get("slot"),
            sensitive=bool(raw.get("sensitive", False)),
        )
    except (ValueError, AttributeError):
        return f"bad context {raw!r}"
    golds = []
    for span in data.get("pii", []):
        kind, turn, text = span.get("type"), span.get("turn", 0), span.get("text")
        if kind not in {k.value for k in PII}:
            return f"unknown PII type {kind!r} (one of: {', '.join(PII)})"
        if not isinstance(turn, int) or not 0 <= turn < len(turns):
            return f"turn {turn!r} out of range"
        start = turns[turn].find(text) if isinstance(text, str) and text else -1
        if start < 0:
            return f"the {kind} span is not in turn {turn}"
        golds.append((kind, turn, start, start + len(text)))
    return turns, context, golds


def _write_markdown(report_path: Path, report: dict[str, Any]) -> None:
    rows = [
        [kind, report["spans"][kind], recall, TARGETS.get(kind, "-")]
        for kind, recall in report["recall"].items()
    ]
    missed = [(i["line"], m["type"]) for i in report["items"] for m in i["missed"]]
    false = [(i["line"], f["as"], f["text"]) for i in report["items"] for f in i["false"]]
    sections = [
        f"# PII redaction: {report['manifest']}",
        f"{report['n']} lines; precision {report['precision']:.3f} (target "
        f"{TARGETS['precision']}), recall over all spans {report['recall_all']:.3f}, clean "
        f"lines untouched {report['clean_untouched']:.3f} of {report['clean_n']}; targets "
        + ("met" if report["meets_targets"] else "NOT met"),
        markdown_table(["type", "spans", "recall", "target"], rows),
        "## Missed (by line; the text is not shown)",
        "\n".join(f"- line {line}: {kind}" for line, kind in missed) or "none",
        "## Masked without being PII",
        "\n".join(f"- line {line}: {text!r} as {kind}" for line, kind, text in false) or "none",
    ]
    write_markdown(report_path, sections, report["issues"])
