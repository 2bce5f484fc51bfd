"""Domain packs: the YAML files in ``intents/`` that say what the bot understands and says.

Loading validates everything up front and reports the file, line and reason, so a typo in a
pack fails at start-up rather than in the middle of a call.
"""

from dataclasses import dataclass
from pathlib import Path

import yaml

from voicebot.errors import PackError

PACKS_DIR = Path(__file__).resolve().parents[2] / "intents"
OUT_OF_SCOPE = "out_of_scope"


@dataclass(frozen=True)
class Intent:
    name: str
    description: str
    examples: tuple[str, ...]
    response: str
    end_call: bool = False


@dataclass(frozen=True)
class Pack:
    name: str
    language: str
    description: str
    greeting: str
    fallback: str
    no_input: tuple[str, ...]
    intents: dict[str, Intent]
    path: Path


def pack_path(name_or_path: str | Path) -> Path:
    """A pack name (``bank``) resolves to ``intents/bank.yaml``; a path is used as is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = PACKS_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in PACKS_DIR.glob("*.yaml"))) or "none"
        raise PackError(f"unknown pack {str(name_or_path)!r} (packs in {PACKS_DIR}: {known})")
    return candidate


def load_pack(name_or_path: str | Path) -> Pack:
    """Load and validate a pack; raises ``PackError`` naming file, line and reason."""
    path = pack_path(name_or_path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PackError(f"{path}: cannot read pack ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PackError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    top = _mapping(path, root, "the pack")
    for key in ("name", "greeting", "fallback", "no_input", "intents"):
        _required(path, root, top, key)
    intents_node = _mapping(path, top["intents"], "intents")
    if not intents_node:
        raise PackError(f"{_where(path, top['intents'])}: 'intents' is empty")
    return Pack(
        name=_string(path, top["name"], "name"),
        language=_optional_string(path, top, "language") or "en",
        description=_optional_string(path, top, "description"),
        greeting=_string(path, top["greeting"], "greeting"),
        fallback=_string(path, top["fallback"], "fallback"),
        no_input=tuple(_string_list(path, top["no_input"], "no_input")),
        intents={name: _intent(path, name, node) for name, node in intents_node.items()},
        path=path,
    )


def _intent(path: Path, name: str, node: yaml.Node) -> Intent:
    fields = _mapping(path, node, f"intent {name!r}")
    if name == OUT_OF_SCOPE:
        raise PackError(f"{_where(path, node)}: {OUT_OF_SCOPE!r} is reserved, not an intent")
    examples = _string_list(path, _required(path, node, fields, "examples"), f"{name}.examples")
    seen: set[str] = set()
    for example, example_node in zip(examples, fields["examples"].value, strict=True):
        key = example.strip().lower()
        if key in seen:
            raise PackError(f"{_where(path, example_node)}: duplicate example {example!r}")
        seen.add(key)
    end_call = False
    if "end_call" in fields:
        value = yaml.safe_load(yaml.serialize(fields["end_call"]))
        if not isinstance(value, bool):
            raise PackError(f"{_where(path, fields['end_call'])}: end_call must be true or false")
        end_call = value
    return Intent(
        name=name,
        description=_optional_string(path, fields, "description"),
        examples=tuple(examples),
        response=_string(path, _required(path, node, fields, "response"), f"{name}.response"),
        end_call=end_call,
    )


def _where(path: Path, node: yaml.Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _mapping(path: Path, node: yaml.Node, what: str) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise PackError(f"{_where(path, node)}: {what} must be a mapping")
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if key.value in out:
            raise PackError(f"{_where(path, key)}: duplicate key {key.value!r} in {what}")
        out[key.value] = value
    return out


def _required(path: Path, parent: yaml.Node, fields: dict[str, yaml.Node], key: str) -> yaml.Node:
    if key not in fields:
        raise PackError(f"{_where(path, parent)}: missing required key {key!r}")
    return fields[key]


def _string(path: Path, node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise PackError(f"{_where(path, node)}: {what} must be a non-empty string")
    return str(node.value).strip()


def _optional_string(path: Path, fields: dict[str, yaml.Node], key: str) -> str:
    return _string(path, fields[key], key) if key in fields else ""


def _string_list(path: Path, node: yaml.Node, what: str) -> list[str]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise PackError(f"{_where(path, node)}: {what} must be a non-empty list of strings")
    return [_string(path, item, f"an entry of {what}") for item in node.value]
