"""Domain packs: the YAML files in ``intents/`` that say what the bot understands and says.

Loading validates everything up front and reports the file, line and reason, so a typo in a
pack fails at start-up rather than in the middle of a call.
"""

import difflib
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

from voicebot.dialog.actions import ACTIONS
from voicebot.dialog.slots import SLOT_TYPES
from voicebot.errors import PackError
from voicebot.handoff.config import QueueConfig
from voicebot.handoff.policy import EscalationConfig
from voicebot.handoff.transfer import TransferTarget, TransferTargetError
from voicebot.privacy.config import PrivacyConfig

PACKS_DIR = Path(__file__).resolve().parents[2] / "intents"
OUT_OF_SCOPE = "out_of_scope"

# The keys each part of a pack may have: anything else is a typo that would silently switch
# a behaviour off (``verfy: true`` would leave a flow unverified), so it fails the load.
_PACK_KEYS = frozenset(
    {
        "name", "language", "description", "greeting", "fallback", "no_input", "intents",
        "handoff", "flows", "verification", "faq", "max_attempts", "escalation", "privacy",
        "queue", "recognizer", "not_heard", "keypad_hint", "wrong_length", "readback",
        "transfer_to",
    }
)  # fmt: skip
_INTENT_KEYS = frozenset({"description", "paraphrase", "examples", "response", "flow", "end_call"})
_FLOW_KEYS = frozenset({"description", "verify", "slots", "confirm", "action", "done", "cancelled"})
_SLOT_KEYS = ("name", "type", "prompt", "reprompt")
_OPTIONAL_SLOT_KEYS = ("sensitive",)
_VERIFICATION_KEYS = ("ask_phone", "prompt", "reprompt", "failed")
_RECOGNIZER_KEYS = frozenset({"bias", "vocabulary", "digits_model"})
_Section = TypeVar("_Section", EscalationConfig, PrivacyConfig)


@dataclass(frozen=True)
class Intent:
    name: str
    description: str
    examples: tuple[str, ...]
    response: str
    end_call: bool = False
    flow: str | None = None  # name of the flow that serves this intent, if any
    # How the bot names the request back to the caller: "Did you want to {paraphrase}?"
    paraphrase: str = ""


@dataclass(frozen=True)
class SlotSpec:
    name: str
    type: str  # a parser of voicebot.dialog.slots
    prompt: str
    reprompt: str
    sensitive: bool = False  # masked wherever stored, the recording muted while it is said


@dataclass(frozen=True)
class Flow:
    """A multi-turn task: fill slots, confirm, run a back-office action, say the result.

    Templates use ``{slot}`` and the action's result fields.
    """

    name: str
    description: str  # how the bot names the task when coming back to it ("blocking your card")
    verify: bool
    slots: tuple[SlotSpec, ...]
    confirm: str | None
    action: str
    done: str
    cancelled: str


@dataclass(frozen=True)
class Verification:
    ask_phone: str  # the caller ID matched no customer: ask for the account's phone number
    prompt: str  # the verification question
    reprompt: str
    failed: str  # said before handing the call to a person
    digits: int | None = None  # the answer's length (a ZIP code: 5): shorter or longer is re-asked


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
    handoff: str = "Let me connect you to one of our agents."
    flows: dict[str, Flow] = field(default_factory=dict)
    verification: Verification | None = None
    max_attempts: int = 2  # re-prompts for one question before the call is handed off
    faq: tuple[str, ...] = ()  # facts the optional LLM may answer from
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)  # consent, retention
    queue: QueueConfig = field(default_factory=QueueConfig)  # hold, callback (live transfer)
    # Domain terms the recognizer is biased toward on every turn (``recognizer:`` in the YAML;
    # empty when ``bias: false``): the bank's name, its products, words Whisper mishears.
    vocabulary: tuple[str, ...] = ()
    # A larger recognizer for the answers to digit questions only (``recognizer:
    # digits_model``, e.g. base; ``--digits-asr`` wins): docs/benchmarks.md measures it.
    digits_model: str | None = None
    not_heard: str = "Sorry, I didn't catch that."  # speech the recognizer could not make out
    keypad_hint: str = "You can also type it on your phone's keypad."  # after a failed capture
    wrong_length: str = "I heard {heard} digits, but I need {expected}."  # a digit answer
    readback: str = "I have {value}. Is that right?"  # digits heard on a second try
    transfer_to: TransferTarget | None = None  # the agents' line (``--transfer-to`` wins)


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
    root = _compose(path)
    top = _mapping(path, root, "the pack", _PACK_KEYS)
    for key in ("name", "greeting", "fallback", "no_input", "intents"):
        _required(path, root, top, key)
    intents_node = _mapping(path, top["intents"], "intents")
    if not intents_node:
        raise PackError(f"{_where(path, top['intents'])}: 'intents' is empty")
    flows = {
        name: _flow(path, name, node)
        for name, node in (_mapping(path, top["flows"], "flows") if "flows" in top else {}).items()
    }
    verification = _verification(path, top["verification"]) if "verification" in top else None
    intents = {name: _intent(path, name, node) for name, node in intents_node.items()}
    for intent_name, intent in intents.items():
        node = _mapping(path, intents_node[intent_name], intent_name)
        if intent.flow is not None and intent.flow not in flows:
            raise PackError(f"{_where(path, node['flow'])}: unknown flow {intent.flow!r}")
        if intent.flow and flows[intent.flow].verify and verification is None:
            raise PackError(
                f"{_where(path, node['flow'])}: flow {intent.flow!r} needs verification, "
                "but the pack has no 'verification' section"
            )
    return Pack(
        name=_string(path, top["name"], "name"),
        language=_optional_string(path, top, "language") or "en",
        description=_optional_string(path, top, "description"),
        greeting=_string(path, top["greeting"], "greeting"),
        fallback=_string(path, top["fallback"], "fallback"),
        no_input=tuple(_string_list(path, top["no_input"], "no_input")),
        intents=intents,
        path=path,
        handoff=_optional_string(path, top, "handoff") or Pack.handoff,
        flows=flows,
        verification=verification,
        faq=tuple(_string_list(path, top["faq"], "faq")) if "faq" in top else (),
        max_attempts=_count(path, top, "max_attempts", Pack.max_attempts),
        escalation=_section(path, top.get("escalation"), "escalation", EscalationConfig),
        privacy=_section(path, top.get("privacy"), "privacy", PrivacyConfig),
        queue=_section(path, top.get("queue"), "queue", QueueConfig),
        **_recognizer(path, top.get("recognizer")),
        not_heard=_optional_string(path, top, "not_heard") or Pack.not_heard,
        keypad_hint=_optional_string(path, top, "keypad_hint") or Pack.keypad_hint,
        wrong_length=_text_template(path, top, "wrong_length", {"heard", "expected"}),
        readback=_text_template(path, top, "readback", {"value"}),
        transfer_to=_transfer_to(path, top),
    )


def _transfer_to(path: Path, top: dict[str, yaml.Node]) -> TransferTarget | None:
    if "transfer_to" not in top:
        return None
    node = top["transfer_to"]
    try:
        return TransferTarget.parse(_string(path, node, "transfer_to"), "transfer_to")
    except TransferTargetError as exc:
        raise PackError(f"{_where(path, node)}: {exc}") from exc


def _compose(path: Path) -> yaml.Node:
    """The pack's YAML node tree; ``PackError`` for unreadable, non-UTF-8, invalid or empty."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PackError(f"{path}: cannot read pack ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise PackError(
            f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x}); save the pack as UTF-8"
        ) from exc
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PackError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if root is None:
        raise PackError(f"{path}: the pack is empty (see docs/packs.md for the schema)")
    return root


def _section(path: Path, node: yaml.Node | None, what: str, kind: type[_Section]) -> _Section:
    """An optional settings mapping (``escalation``, ``privacy``) read by its class's
    ``from_mapping``, whose ``ValueError`` becomes a ``PackError`` at the section's line."""
    if node is None:
        return kind()
    _mapping(path, node, what)
    try:
        return kind.from_mapping(yaml.safe_load(yaml.serialize(node)))
    except ValueError as exc:
        raise PackError(f"{_where(path, node)}: {exc}") from exc


def _recognizer(path: Path, node: yaml.Node | None) -> dict[str, object]:
    """The ``recognizer`` section as Pack fields: ``vocabulary`` (a list of terms; empty
    when ``bias`` is false, default true) and ``digits_model`` (a model for digit answers)."""
    if node is None:
        return {}
    fields = _mapping(path, node, "recognizer", _RECOGNIZER_KEYS)
    terms = _string_list(path, _required(path, node, fields, "vocabulary"), "vocabulary")
    return {
        "vocabulary": tuple(terms) if _bool(path, fields, "bias", default=True) else (),
        "digits_model": _optional_string(path, fields, "digits_model") or None,
    }


def _text_template(path: Path, top: dict[str, yaml.Node], key: str, names: set[str]) -> str:
    """One of the pack's own phrasings with ``{placeholders}`` (checked), or the default."""
    if key not in top:
        return getattr(Pack, key)
    _template(path, top[key], key, names)
    return _string(path, top[key], key)


def _count(path: Path, fields: dict[str, yaml.Node], key: str, default: int) -> int:
    if key not in fields:
        return default
    value = yaml.safe_load(yaml.serialize(fields[key]))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PackError(f"{_where(path, fields[key])}: {key} must be a whole number >= 1")
    return value


def _intent(path: Path, name: str, node: yaml.Node) -> Intent:
    fields = _mapping(path, node, f"intent {name!r}", _INTENT_KEYS)
    if name == OUT_OF_SCOPE:
        raise PackError(f"{_where(path, node)}: {OUT_OF_SCOPE!r} is reserved, not an intent")
    examples = _string_list(path, _required(path, node, fields, "examples"), f"{name}.examples")
    seen: set[str] = set()
    for example, example_node in zip(examples, fields["examples"].value, strict=True):
        key = example.strip().lower()
        if key in seen:
            raise PackError(f"{_where(path, example_node)}: duplicate example {example!r}")
        seen.add(key)
    end_call = _bool(path, fields, "end_call")
    flow = _optional_string(path, fields, "flow") or None
    return Intent(
        flow=flow,
        name=name,
        description=_optional_string(path, fields, "description"),
        examples=tuple(examples),
        response=_optional_string(path, fields, "response")
        if flow
        else _string(path, _required(path, node, fields, "response"), f"{name}.response"),
        end_call=end_call,
        paraphrase=_optional_string(path, fields, "paraphrase") or name.replace("_", " "),
    )


def _flow(path: Path, name: str, node: yaml.Node) -> Flow:
    fields = _mapping(path, node, f"flow {name!r}", _FLOW_KEYS)
    for key in ("action", "done"):
        _required(path, node, fields, key)
    slots = []
    if "slots" in fields:
        if not isinstance(fields["slots"], yaml.SequenceNode):
            raise PackError(f"{_where(path, fields['slots'])}: slots must be a list")
        for slot_node in fields["slots"].value:
            slot = _mapping(path, slot_node, "a slot", frozenset(_SLOT_KEYS + _OPTIONAL_SLOT_KEYS))
            for key in _SLOT_KEYS:
                _required(path, slot_node, slot, key)
            slot_type = _string(path, slot["type"], "type")
            if slot_type not in SLOT_TYPES:
                raise PackError(
                    f"{_where(path, slot['type'])}: unknown slot type {slot_type!r} "
                    f"(known: {', '.join(sorted(SLOT_TYPES))})"
                )
            slots.append(
                SlotSpec(
                    _string(path, slot["name"], "name"),
                    slot_type,
                    _string(path, slot["prompt"], "prompt"),
                    _string(path, slot["reprompt"], "reprompt"),
                    _bool(path, slot, "sensitive"),
                )
            )
    action = _action(path, fields["action"])
    slot_names = {slot.name for slot in slots}
    missing = sorted(ACTIONS[action].needs - slot_names)
    if missing:
        raise PackError(
            f"{_where(path, fields['action'])}: action {action!r} needs the slot(s) "
            f"{', '.join(missing)}, which flow {name!r} does not ask for"
        )
    # A sensitive slot is never read back: it is not a name the templates may use.
    spoken = {slot.name for slot in slots if not slot.sensitive}
    if "confirm" in fields:
        _template(path, fields["confirm"], "confirm", spoken)
    _template(path, fields["done"], "done", spoken | ACTIONS[action].gives)
    return Flow(
        name=name,
        description=_optional_string(path, fields, "description") or name.replace("_", " "),
        verify=_bool(path, fields, "verify"),
        slots=tuple(slots),
        confirm=_optional_string(path, fields, "confirm") or None,
        action=action,
        done=_string(path, fields["done"], "done"),
        cancelled=_optional_string(path, fields, "cancelled")
        or "Okay, I won't do that. What else can I help you with?",
    )


def _action(path: Path, node: yaml.Node) -> str:
    name = _string(path, node, "action")
    if name not in ACTIONS:
        raise PackError(
            f"{_where(path, node)}: unknown action {name!r} (known: {', '.join(sorted(ACTIONS))})"
        )
    return name


def _template(path: Path, node: yaml.Node, what: str, known: set[str]) -> None:
    """A ``{name}`` the flow cannot fill would fail mid-call: check every one at load."""
    text = _string(path, node, what)
    try:
        names = {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    except ValueError as exc:  # a lone "{" or "}"
        raise PackError(f"{_where(path, node)}: {what}: {exc}") from exc
    unknown = sorted(names - known)
    if unknown:
        raise PackError(
            f"{_where(path, node)}: {what} uses {', '.join('{' + n + '}' for n in unknown)}; "
            f"known here: {', '.join(sorted(known)) or 'none'}"
        )


def _verification(path: Path, node: yaml.Node) -> Verification:
    fields = _mapping(path, node, "verification", frozenset({*_VERIFICATION_KEYS, "digits"}))
    for key in _VERIFICATION_KEYS:
        _required(path, node, fields, key)
    digits = _count(path, fields, "digits", 0) or None
    return Verification(*(_string(path, fields[k], k) for k in _VERIFICATION_KEYS), digits=digits)


def _bool(path: Path, fields: dict[str, yaml.Node], key: str, default: bool = False) -> bool:
    if key not in fields:
        return default
    value = yaml.safe_load(yaml.serialize(fields[key]))
    if not isinstance(value, bool):
        raise PackError(f"{_where(path, fields[key])}: {key} must be true or false")
    return value


def _where(path: Path, node: yaml.Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _mapping(
    path: Path, node: yaml.Node, what: str, allowed: frozenset[str] | None = None
) -> dict[str, yaml.Node]:
    """A mapping's entries by key; with ``allowed``, any other key is an error."""
    if not isinstance(node, yaml.MappingNode):
        raise PackError(f"{_where(path, node)}: {what} must be a mapping")
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if key.value in out:
            raise PackError(f"{_where(path, key)}: duplicate key {key.value!r} in {what}")
        if allowed is not None and key.value not in allowed:
            close = difflib.get_close_matches(str(key.value), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PackError(
                f"{_where(path, key)}: unknown key {key.value!r} in {what}{hint} "
                f"(known: {', '.join(sorted(allowed))})"
            )
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
