"""Reading eval manifests (JSONL) so that one bad line never sinks the whole suite.

Each problem is kept as an ``Issue`` naming the file and line; the suite evaluates the rest
and counts the issues in its report.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.errors import EvalInputError


@dataclass(frozen=True)
class Issue:
    where: str  # "path:line"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(frozen=True)
class Entry:
    line: int
    data: dict[str, Any]


def read_jsonl(path: Path, required: tuple[str, ...]) -> tuple[list[Entry], list[Issue]]:
    """Entries with every ``required`` key as a non-empty string, and the lines without."""
    if not path.is_file():
        raise EvalInputError(f"{path}: manifest not found")
    entries: list[Entry] = []
    issues: list[Issue] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            issues.append(Issue(where, f"invalid JSON ({exc.msg})"))
            continue
        if not isinstance(data, dict):
            issues.append(Issue(where, "a line must be a JSON object"))
            continue
        missing = [k for k in required if not isinstance(data.get(k), str) or not data[k].strip()]
        if missing:
            issues.append(Issue(where, f"missing or empty {', '.join(missing)}"))
            continue
        entries.append(Entry(number, data))
    if not entries and not issues:
        raise EvalInputError(f"{path}: the manifest is empty")
    return entries, issues
