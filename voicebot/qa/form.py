"""QA forms: what a reviewer checks on every call of a pack, and how much each check weighs.

A pack's form is ``intents/qa/<pack>.yaml`` (schema in ``docs/qa.md``). It is loaded strictly,
like a pack: an unknown criterion or setting, a weight that is not a positive number, or
weights that do not add up to 100 fail the load with the file, line and reason, so a typo
(``no_talkover``) cannot silently drop a check from every scorecard. The same file may hold
the pack's post-call survey (``survey:``), which is how a pack opts in to it.

Values are validated by pydantic models (the criteria's own settings live next to their rules
in ``voicebot.qa.criteria``); errors are mapped back to the YAML line they came from.
"""

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voicebot.dialog.pack import PACKS_DIR
from voicebot.errors import QaFormError
from voicebot.qa.criteria import CRITERIA, Criterion

QA_DIR = PACKS_DIR / "qa"
TOTAL_WEIGHT = 100.0
_WEIGHT_TOLERANCE = 1e-6


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SurveySpec(_Strict):
    """The post-call survey a pack opts in to: one question, a 1-5 answer by keypad or voice."""

    question: str = Field(min_length=1)
    reprompt: str = Field(min_length=1)
    thanks: str = Field(min_length=1)


class _CommonSettings(_Strict):
    weight: float = Field(gt=0)
    critical: bool = False  # failing it fails the part whatever the score
    judge: Literal["rule", "llm"] = "rule"  # llm: asked when one is configured, else the rule
    parts: tuple[Literal["bot", "agent"], ...] | None = None


class _FormFile(_Strict):
    form: str = Field(min_length=1)
    pass_score: float = Field(default=80.0, ge=0, le=100)
    criteria: dict[str, dict[str, Any]]
    survey: SurveySpec | None = None


@dataclass(frozen=True)
class CriterionSpec:
    """One criterion as a form uses it: the rule, its settings, and its weight."""

    criterion: Criterion
    settings: Any  # the criterion's own pydantic settings model
    weight: float
    critical: bool
    judge: str  # "rule" | "llm"
    parts: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.criterion.name


@dataclass(frozen=True)
class QaForm:
    name: str
    pack: str
    path: Path
    pass_score: float
    criteria: tuple[CriterionSpec, ...]


@dataclass(frozen=True)
class QaConfig:
    """What a pack's QA file configures: its form, and its survey when it has one."""

    form: QaForm
    survey: SurveySpec | None = None


def qa_path(pack: str) -> Path:
    return QA_DIR / f"{pack}.yaml"


def load_qa(pack: str, path: str | Path | None = None) -> QaConfig | None:
    """The QA file of ``pack``: ``path``, or ``intents/qa/<pack>.yaml``; None when the pack
    has none. Raises ``QaFormError`` naming file, line and reason when it is broken."""
    if path is not None:
        return load_qa_file(Path(path), pack)
    default = qa_path(pack)
    return load_qa_file(default, pack) if default.exists() else None


def load_qa_file(path: Path, pack: str) -> QaConfig:
    root = _compose(path)
    data = yaml.safe_load(yaml.serialize(root))
    try:
        top = _FormFile.model_validate(data)
    except ValidationError as exc:
        raise _error(path, root, exc) from exc
    criteria_node = _child(root, ("criteria",))
    specs = []
    for name, fields in top.criteria.items():
        criterion = CRITERIA.get(name)
        if criterion is None:
            close = difflib.get_close_matches(name, CRITERIA, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise QaFormError(
                f"{_where(path, _key(criteria_node, name))}: unknown criterion {name!r}{hint} "
                f"(known: {', '.join(sorted(CRITERIA))})"
            )
        specs.append(_criterion(path, root, criterion, fields))
    if not specs:
        raise QaFormError(f"{_where(path, _key(root, 'criteria'))}: the form has no criteria")
    total = sum(spec.weight for spec in specs)
    if abs(total - TOTAL_WEIGHT) > _WEIGHT_TOLERANCE:
        weights = ", ".join(f"{s.name} {s.weight:g}" for s in specs)
        where = _where(path, _key(root, "criteria"))
        raise QaFormError(
            f"{where}: the criteria's weights add up to {total:g}, not {TOTAL_WEIGHT:g} ({weights})"
        )
    form = QaForm(top.form, pack, path, top.pass_score, tuple(specs))
    return QaConfig(form, top.survey)


def _criterion(path: Path, root: yaml.Node, criterion: Criterion, fields: dict) -> CriterionSpec:
    common_keys = set(_CommonSettings.model_fields)
    where = ("criteria", criterion.name)
    try:
        common = _CommonSettings.model_validate(
            {k: v for k, v in fields.items() if k in common_keys}
        )
        settings = criterion.settings.model_validate(
            {k: v for k, v in fields.items() if k not in common_keys}
        )
    except ValidationError as exc:
        raise _error(path, root, exc, prefix=where) from exc
    parts = common.parts or criterion.parts
    wrong = sorted(set(parts) - set(criterion.parts))
    if wrong:
        raise QaFormError(
            f"{_where(path, _child(root, (*where, 'parts')))}: {criterion.name} does not apply "
            f"to the {', '.join(wrong)} part (it can score: {', '.join(criterion.parts)})"
        )
    if common.judge == "llm" and criterion.llm_question is None:
        raise QaFormError(
            f"{_where(path, _child(root, (*where, 'judge')))}: {criterion.name} is measured, "
            "not judged: it has no LLM judge (use judge: rule)"
        )
    return CriterionSpec(criterion, settings, common.weight, common.critical, common.judge, parts)


# --- YAML plumbing: nodes carry the lines that errors point at ------------------------------


def _compose(path: Path) -> yaml.Node:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise QaFormError(f"{path}: cannot read the QA form ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise QaFormError(f"{path}: not UTF-8 text; save the QA form as UTF-8") from exc
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise QaFormError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if root is None:
        raise QaFormError(f"{path}: the QA form is empty (see docs/qa.md)")
    if not isinstance(root, yaml.MappingNode):
        raise QaFormError(f"{_where(path, root)}: a QA form must be a mapping (see docs/qa.md)")
    return root


def _key(node: yaml.Node, name: str) -> yaml.Node:
    """The key node ``name`` of a mapping (where "unknown key" errors point)."""
    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            if key.value == name:
                return key
    return node


def _child(node: yaml.Node, loc: tuple[Any, ...]) -> yaml.Node:
    """The deepest node on the path ``loc`` (mapping keys, list indexes) that exists."""
    for step in loc:
        if isinstance(node, yaml.MappingNode):
            found = [value for key, value in node.value if key.value == str(step)]
            if not found:
                return node
            node = found[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if step >= len(node.value):
                return node
            node = node.value[step]
        else:
            return node
    return node


def _where(path: Path, node: yaml.Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _error(
    path: Path, root: yaml.Node, exc: ValidationError, prefix: tuple[Any, ...] = ()
) -> QaFormError:
    """The first pydantic error as ``file:line: where: what``."""
    first = exc.errors()[0]
    loc = (*prefix, *first["loc"])
    parent = _child(root, loc[:-1])
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return QaFormError(
            f"{_where(path, _key(parent, str(loc[-1])))}: unknown key {loc[-1]!r} in "
            f"{'.'.join(map(str, loc[:-1])) or 'the form'}{hint} (known: {', '.join(allowed)})"
        )
    # A missing key is reported where its mapping is named; a bad value where it stands.
    node = _named(root, loc[:-1]) if first["type"] == "missing" else _child(root, loc)
    return QaFormError(f"{_where(path, node)}: {'.'.join(map(str, loc))}: {first['msg']}")


def _named(root: yaml.Node, loc: tuple[Any, ...]) -> yaml.Node:
    """The key that names the node at ``loc`` (the document itself for the top level)."""
    if not loc:
        return root
    return _key(_child(root, loc[:-1]), str(loc[-1]))


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    if not loc:
        return sorted(_FormFile.model_fields)
    if loc[0] == "survey":
        return sorted(SurveySpec.model_fields)
    criterion = CRITERIA[loc[1]]
    return sorted({*_CommonSettings.model_fields, *criterion.settings.model_fields})
