"""Scoring a call against its pack's QA form: the scorecard, the LLM judge, and the scorer
that scores every call as it finishes.

A part's score is the weighted share of its applicable criteria that passed, 0-100 (a
criterion that does not apply leaves its weight out, as "N/A" answers do on review forms);
the part passes at the form's ``pass_score`` unless a critical criterion failed. Scorecards
are plain dataclasses with ``to_dict``/``from_dict``: what the store keeps, what
``voicebot qa show`` prints and what a supervisor page reads.
"""

import json
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from voicebot.dialog.llm import LLMClient, LLMError
from voicebot.qa.criteria import (
    Evidence,
    Outcome,
    Part,
    Verdict,
    mask_digits,
    split_parts,
)
from voicebot.qa.form import CriterionSpec, QaConfig, QaForm, load_qa
from voicebot.store.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CriterionResult:
    criterion: str
    verdict: Verdict
    weight: float
    critical: bool
    judge: str  # who decided: "rule" or "llm"
    explanation: str
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class PartScore:
    part: str  # bot | agent
    score: float | None  # 0-100 over the applicable criteria; None when none applied
    passed: bool | None
    critical_failed: bool
    results: tuple[CriterionResult, ...]

    @property
    def failed(self) -> list[str]:
        return [r.criterion for r in self.results if r.verdict == Verdict.FAIL]


@dataclass(frozen=True)
class Scorecard:
    call_id: str
    pack: str
    form: str
    started_at: str
    scored_at: str
    parts: tuple[PartScore, ...]

    def part(self, name: str) -> PartScore | None:
        return next((p for p in self.parts if p.part == name), None)

    @property
    def passed(self) -> bool | None:
        """Every scored part passed (None when no part had anything to score)."""
        verdicts = [p.passed for p in self.parts if p.passed is not None]
        return all(verdicts) if verdicts else None

    @property
    def failed(self) -> list[str]:
        """``part:criterion`` for every failed criterion."""
        return [f"{p.part}:{name}" for p in self.parts for name in p.failed]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed, "failed": self.failed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scorecard":
        parts = tuple(
            PartScore(
                part=p["part"],
                score=p["score"],
                passed=p["passed"],
                critical_failed=p["critical_failed"],
                results=tuple(
                    CriterionResult(
                        **(r | {"verdict": Verdict(r["verdict"])})
                        | {"evidence": tuple(Evidence(**e) for e in r["evidence"])}
                    )
                    for r in p["results"]
                ),
            )
            for p in data["parts"]
        )
        fields = ("call_id", "pack", "form", "started_at", "scored_at")
        return cls(**{k: data[k] for k in fields}, parts=parts)


def score_call(record: dict[str, Any], form: QaForm, judge: "LLMJudge | None" = None) -> Scorecard:
    """Score a call record (the JSON form, as stored) against ``form``. Pure and quick
    with rules only; with a ``judge``, criteria whose form says ``judge: llm`` ask it."""
    parts = []
    for part in split_parts(record):
        results = tuple(
            _result(spec, part, judge) for spec in form.criteria if part.speaker in spec.parts
        )
        parts.append(part_score(part.speaker, results, form.pass_score))
    return Scorecard(
        call_id=record["call_id"],
        pack=record.get("pack") or form.pack,
        form=form.name,
        started_at=record.get("started_at", ""),
        scored_at=datetime.now(UTC).isoformat(timespec="seconds"),
        parts=tuple(parts),
    )


def _result(spec: CriterionSpec, part: Part, judge: "LLMJudge | None") -> CriterionResult:
    outcome, by = None, "rule"
    if spec.judge == "llm" and judge is not None:
        try:
            outcome, by = judge.judge(spec, part), "llm"
        except LLMError as exc:  # the rule answers instead; the scorecard says so
            log.warning("LLM judge failed on %s: %s", spec.name, exc)
            ruled = spec.criterion.rule(part, spec.settings)
            outcome = Outcome(
                ruled.verdict, f"LLM judge failed; {ruled.explanation}", ruled.evidence
            )
    if outcome is None:
        outcome = spec.criterion.rule(part, spec.settings)
    return CriterionResult(
        spec.name, outcome.verdict, spec.weight, spec.critical, by, outcome.explanation,
        outcome.evidence,
    )  # fmt: skip


def part_score(part: str, results: tuple[CriterionResult, ...], pass_score: float) -> PartScore:
    applicable = [r for r in results if r.verdict != Verdict.NA]
    critical = any(r.critical and r.verdict == Verdict.FAIL for r in results)
    if not applicable:
        return PartScore(part, None, None, critical, results)
    weight = sum(r.weight for r in applicable)
    score = round(100 * sum(r.weight for r in applicable if r.verdict == Verdict.PASS) / weight, 1)
    return PartScore(part, score, score >= pass_score and not critical, critical, results)


# --- the LLM judge ---------------------------------------------------------------------------

_SYSTEM = (
    "You review customer service phone calls for quality. You get one question about the "
    "call and its numbered transcript. Reply with one JSON object and nothing else: "
    '{"verdict": "pass" or "fail" or "na", "turns": [numbers of the turns that show it], '
    '"reason": "one short sentence"}.'
)


class LLMJudge:
    """Asks the configured LLM (``voicebot.dialog.llm``) a criterion's question about a part.

    Raises ``LLMError`` when the server fails or the answer is not the JSON asked for, so
    the rule answers instead: a scorecard never depends on a model's whim to exist."""

    def __init__(self, client: LLMClient) -> None:
        self.client = client

    def judge(self, spec: CriterionSpec, part: Part) -> Outcome:
        question = spec.criterion.llm_question
        assert question is not None  # the form loader allows judge: llm only with one
        fields = spec.settings.model_dump() | {
            "speaker": "agent" if part.speaker == "agent" else "bot",
            "reason": part.handoff_reason or "none (no handoff)",
        }
        transcript = "\n".join(
            f"[{line.index}] {line.role.upper()}: {line.text}"
            for line in (*part.before, *part.lines)
        )
        answer = self.client.chat(
            [
                {"role": "system", "content": _SYSTEM},
                {
                    "role": "user",
                    "content": f"Question: {question.format(**fields)}\n\n{transcript}",
                },
            ],
            max_tokens=150,
        )
        return _parse_judgement(answer, {line.index: line for line in (*part.before, *part.lines)})


def _parse_judgement(answer: str, lines: dict[int, Any]) -> Outcome:
    found = re.search(r"\{.*\}", answer, re.S)
    try:
        data = json.loads(found.group(0)) if found else None
        verdict = Verdict(str(data["verdict"]).strip().lower())
    except (ValueError, KeyError, TypeError) as exc:
        raise LLMError(f"the LLM judge did not answer with a verdict: {answer[:120]!r}") from exc
    turns = [t for t in data.get("turns") or [] if isinstance(t, int) and t in lines]
    evidence = tuple(
        Evidence(t, mask_digits(lines[t].text[:200]), "cited by the LLM judge") for t in turns
    )
    return Outcome(verdict, str(data.get("reason") or "")[:300], evidence)


# --- scoring calls as they finish ------------------------------------------------------------


class QaScorer:
    """Scores finished calls in its own thread and stores the scorecards.

    ``submit`` is called by the store's writer thread once a finished record is written
    (``voicebot.store.writer``): it only queues, so neither a call nor the writer waits for
    scoring (or for an LLM judge). Forms are loaded once per pack; a pack without a form is
    not scored. A failure to score one call is logged and never affects another."""

    def __init__(
        self,
        store: Store,
        judge: LLMJudge | None = None,
        observe: Callable[[dict[str, Any], Scorecard], None] | None = None,
    ) -> None:
        self.store = store
        self.judge = judge
        self._observe = observe
        self._forms: dict[str, QaConfig | None] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="voicebot-qa")

    def form(self, pack: str) -> QaForm | None:
        with self._lock:
            if pack not in self._forms:
                self._forms[pack] = load_qa(pack)
            config = self._forms[pack]
        return config.form if config else None

    def submit(self, record: dict[str, Any]) -> None:
        self._pool.submit(self.score, record)

    def score(self, record: dict[str, Any]) -> Scorecard | None:
        """Score and store one call now (None: no form for its pack, or it failed)."""
        card = None
        try:
            form = self.form(record.get("pack") or "")
            if form is not None:
                card = score_call(record, form, self.judge)
                self.store.save_scorecard(card.to_dict())
            if self._observe is not None:
                self._observe(record, card)
        except Exception:  # one bad record (or form) must not stop the scoring of the others
            log.exception("QA scoring of call %s failed", record.get("call_id"))
        return card

    def flush(self) -> None:
        """Wait for every submitted call to be scored (one-shot commands, tests)."""
        self._pool.submit(lambda: None).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
