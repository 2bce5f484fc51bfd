"""Call scenarios (YAML, one call a file): parsed strictly, every problem named by file and line.

The format is the eval contract's (``/work/shared/eval-formats.md``) plus a few optional keys
documented in ``eval/README.md``: ``caller_id`` and ``tags`` per scenario; ``barge_in`` and
``noise_snr`` per turn; ``bot_says`` under ``expect``. Unknown keys are errors, so a typo
(``expect_intnet``) cannot silently turn a check off. A broken file is an ``Issue`` and the
rest of the suite still runs.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from voicebot.errors import EvalInputError
from voicebot.eval.manifest import Issue

HANDOFF_REASONS = ("caller_request", "low_confidence", "repeated_failure", "negative_sentiment")
_TOP_KEYS = {"name", "pack", "turns", "expect", "caller_id", "tags"}
_TURN_KEYS = {"caller", "audio", "expect_intent", "barge_in", "noise_snr"}
_EXPECT_KEYS = {"handoff", "handoff_reason", "bot_says"}


@dataclass(frozen=True)
class ScenarioTurn:
    caller: str  # what the caller says (the reference transcript)
    line: int
    audio: Path | None = None  # recorded caller audio; synthesized from ``caller`` if None
    expect_intent: str | None = None
    barge_in: float | None = None  # talk this many seconds after the bot starts speaking
    noise_snr: float | None = None  # line noise for this turn only (dB SNR)


@dataclass(frozen=True)
class Scenario:
    name: str
    pack: str
    path: Path
    turns: tuple[ScenarioTurn, ...]
    expect_handoff: bool = False
    expect_reason: str | None = None
    bot_says: tuple[str, ...] = ()  # phrases the bot must say (case-insensitive)
    caller_id: str | None = None
    tags: tuple[str, ...] = ()


class _Problem(Exception):
    """A scenario file that cannot be used, as the issue to report."""

    def __init__(self, issue: Issue) -> None:
        super().__init__(str(issue))
        self.issue = issue


class _Invalid(Exception):
    """A node that breaks the format (its line is where the message points)."""

    def __init__(self, node: yaml.Node, reason: str) -> None:
        super().__init__(reason)
        self.line = node.start_mark.line + 1


def load_scenarios(paths: list[Path]) -> tuple[list[Scenario], list[Issue]]:
    """Every ``*.yaml``/``*.yml`` under the given folders (or the files themselves)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        elif path.is_file():
            files.append(path)
        else:
            raise EvalInputError(f"{path}: no such scenario file or folder")
    if not files:
        raise EvalInputError(f"{', '.join(map(str, paths))}: no scenario files (*.yaml)")
    scenarios: list[Scenario] = []
    issues: list[Issue] = []
    seen: dict[str, Path] = {}
    for file in files:
        try:
            scenario = _parse(file)
        except _Problem as exc:
            issues.append(exc.issue)
            continue
        if scenario.name in seen:
            why = f"scenario name {scenario.name!r} is also used by {seen[scenario.name]}"
            issues.append(Issue(f"{file}:1", why))
            continue
        seen[scenario.name] = file
        scenarios.append(scenario)
    return scenarios, issues


def parse_scenario(path: Path) -> Scenario:
    """One scenario file; raises ``EvalInputError`` as "path:line: reason"."""
    try:
        return _parse(path)
    except _Problem as exc:
        raise EvalInputError(str(exc.issue)) from exc


def _parse(path: Path) -> Scenario:
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _Problem(Issue(str(path), f"cannot read ({exc.strerror})")) from exc
    except yaml.YAMLError as exc:
        mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        why = f"invalid YAML: {getattr(exc, 'problem', exc)}"
        if context is not None and getattr(exc, "context", None):
            why += f" ({exc.context} on line {context.line + 1})"  # where the bad part began
        raise _Problem(Issue(where, why)) from exc
    if root is None:
        raise _Problem(Issue(f"{path}:1", "the scenario is empty"))
    try:
        return _scenario(path, root)
    except _Invalid as exc:
        raise _Problem(Issue(f"{path}:{exc.line}", str(exc))) from exc


def _scenario(path: Path, root: yaml.Node) -> Scenario:
    top = _mapping(root, "a scenario", _TOP_KEYS, required=("name", "pack", "turns"))
    turns_node = top["turns"]
    if not isinstance(turns_node, yaml.SequenceNode) or not turns_node.value:
        raise _Invalid(turns_node, "turns must be a non-empty list")
    expect = _mapping(top["expect"], "expect", _EXPECT_KEYS, required=()) if "expect" in top else {}
    reason = _optional(expect, "handoff_reason", _string)
    if reason is not None and reason not in HANDOFF_REASONS:
        raise _Invalid(
            expect["handoff_reason"],
            f"unknown handoff_reason {reason!r}; use one of {', '.join(HANDOFF_REASONS)}",
        )
    handoff = _optional(expect, "handoff", _bool)
    if reason is not None and handoff is False:
        raise _Invalid(expect["handoff_reason"], "handoff_reason given but handoff is false")
    return Scenario(
        name=_string(top["name"], "name"),
        pack=_string(top["pack"], "pack"),
        path=path,
        turns=tuple(_turn(path, node) for node in turns_node.value),
        expect_handoff=bool(handoff) or reason is not None,
        expect_reason=reason,
        bot_says=tuple(_optional(expect, "bot_says", _strings) or ()),
        caller_id=_optional(top, "caller_id", _string),
        tags=tuple(_optional(top, "tags", _strings) or ()),
    )


def _turn(path: Path, node: yaml.Node) -> ScenarioTurn:
    fields = _mapping(node, "a turn", _TURN_KEYS, required=("caller",))
    audio = _optional(fields, "audio", _string)
    barge_in = _optional(fields, "barge_in", _number)
    if barge_in is not None and barge_in < 0:
        raise _Invalid(fields["barge_in"], "barge_in must be seconds >= 0")
    return ScenarioTurn(
        caller=_string(fields["caller"], "caller"),
        line=node.start_mark.line + 1,
        audio=path.parent / audio if audio else None,
        expect_intent=_optional(fields, "expect_intent", _string),
        barge_in=barge_in,
        noise_snr=_optional(fields, "noise_snr", _number),
    )


def _mapping(
    node: yaml.Node, what: str, allowed: set[str], required: tuple[str, ...]
) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise _Invalid(node, f"{what} must be a mapping")
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if key.value in out:
            raise _Invalid(key, f"duplicate key {key.value!r}")
        if key.value not in allowed:
            raise _Invalid(
                key, f"unknown key {key.value!r} in {what}; allowed: {', '.join(sorted(allowed))}"
            )
        out[key.value] = value
    for key in required:
        if key not in out:
            raise _Invalid(node, f"{what} is missing {key!r}")
    return out


def _optional(fields: dict[str, yaml.Node], key: str, read: Any) -> Any:
    return read(fields[key], key) if key in fields else None


def _scalar(node: yaml.Node, what: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise _Invalid(node, f"{what} must be a single value")
    return yaml.safe_load(yaml.serialize(node))


def _string(node: yaml.Node, what: str) -> str:
    value = _scalar(node, what)
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise _Invalid(node, f"{what} must be a non-empty string")
    return str(value).strip()


def _strings(node: yaml.Node, what: str) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        raise _Invalid(node, f"{what} must be a list of strings")
    return [_string(item, f"an entry of {what}") for item in node.value]


def _number(node: yaml.Node, what: str) -> float:
    value = _scalar(node, what)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(node, f"{what} must be a number")
    return float(value)


def _bool(node: yaml.Node, what: str) -> bool:
    value = _scalar(node, what)
    if not isinstance(value, bool):
        raise _Invalid(node, f"{what} must be true or false")
    return value
