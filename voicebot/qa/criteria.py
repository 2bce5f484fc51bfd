"""The QA criteria: what a reviewer checks on a call, each as a rule on the call record.

A call is scored in parts: the bot's part (every turn until a human agent joins) and, when
the record has turns of role ``agent`` (a live transfer), the agent's part. A part is the
scored speaker's turns and the caller's turns of that stretch, in time order; each rule
reads only what the record holds (texts, times, intents, the handoff) and returns a verdict
(pass, fail, or not applicable) with its evidence: the turn indexes of ``record["turns"]``
and quotes. Phrases are regular expressions matched on the lower-cased text, so a pack
tunes a criterion to its wording without code.

A criterion that has an ``llm_question`` can also be judged by the optional LLM
(``voicebot.qa.scorecard.LLMJudge``) when a form asks for it; the rule stays the default and
the fallback. Timing criteria are measured, never judged.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from voicebot.dialog.slots import SCALES, TEENS, TENS, UNITS, parse_digits, parse_yes_no
from voicebot.handoff.sentiment import analyze
from voicebot.pipeline.record import SERVER_ENDINGS

PARTS = ("bot", "agent")
Pattern = re.Pattern[str]


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NA = "na"  # the criterion does not apply to this call (its weight is not counted)


@dataclass(frozen=True)
class Evidence:
    """Where a verdict comes from: a turn (index into the record's turns) and its words."""

    turn: int
    quote: str
    note: str = ""


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    explanation: str
    evidence: tuple[Evidence, ...] = ()


# --- the call as a reviewer reads it ---------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One turn of the record, as QA reads it."""

    index: int  # position in record["turns"]: what evidence cites
    role: str  # bot | agent | caller
    text: str  # what was said (a cut-off bot turn: the words the caller heard)
    planned: str  # what the speaker meant to say (the full reply when it was cut off)
    start: float
    end: float
    kind: str = ""
    intent: str | None = None
    confidence: float | None = None
    asr_logprob: float | None = None
    keypad: bool = False

    @property
    def said(self) -> str:
        return _lower(self.text)

    @property
    def meant(self) -> str:
        return _lower(self.planned)


@dataclass(frozen=True)
class Part:
    """The stretch of a call one speaker (the bot, or the human agent) is scored on."""

    speaker: str  # bot | agent
    lines: tuple[Line, ...]  # the speaker's and the caller's turns, in time order
    before: tuple[Line, ...] = ()  # the call's turns before this part (an agent's context)
    handoff_reason: str | None = None  # the handoff that ended this part, if one did
    ended_by: str | None = None  # how the call ended, when it ended in this part

    @property
    def speaker_lines(self) -> list[Line]:
        return [line for line in self.lines if line.role == self.speaker]

    @property
    def caller_lines(self) -> list[Line]:
        return [line for line in self.lines if line.role == "caller"]


def split_parts(record: dict[str, Any]) -> list[Part]:
    """The bot's part and, when a human agent spoke, the agent's part of ``record``.

    Turns are ordered by start time (a cut-off bot turn is appended to the record when it
    ends, after the caller turn that cut it); dropped caller turns (noise, hallucinations)
    were never heard by anyone and are left out."""
    lines = sorted(
        (_line(i, turn) for i, turn in enumerate(record.get("turns") or []) if _heard(turn)),
        key=lambda line: (line.start, line.index),
    )
    agent_start = min((line.start for line in lines if line.role == "agent"), default=None)
    ended_by = record.get("ended_by")
    handoff = record.get("handoff_reason") or (record.get("handoff") or {}).get("reason")
    if agent_start is None:
        bot = [line for line in lines if line.role in ("bot", "caller")]
        return [Part("bot", tuple(bot), handoff_reason=handoff, ended_by=ended_by)]
    early = [line for line in lines if line.start < agent_start]
    late = [line for line in lines if line.start >= agent_start and line.role != "bot"]
    bot = [line for line in early if line.role in ("bot", "caller")]
    return [
        Part("bot", tuple(bot), handoff_reason=handoff or "transfer"),
        Part("agent", tuple(late), before=tuple(early), ended_by=ended_by),
    ]


def _heard(turn: dict[str, Any]) -> bool:
    return not (turn.get("role") == "caller" and turn.get("dropped"))


def _line(index: int, turn: dict[str, Any]) -> Line:
    start = float(turn.get("start") or 0.0)
    end = turn.get("end")
    asr = turn.get("asr") or {}
    text = str(turn.get("text") or "")
    return Line(
        index=index,
        role=str(turn.get("role")),
        text=text,
        planned=str(turn.get("planned_text") or text),
        start=start,
        end=float(end) if end is not None else start,
        kind=str(turn.get("kind") or ""),
        intent=turn.get("intent"),
        confidence=turn.get("confidence"),
        asr_logprob=asr.get("avg_logprob"),
        keypad=turn.get("kind") == "dtmf",
    )


# --- text helpers ----------------------------------------------------------------------------


def _lower(text: str) -> str:
    return text.lower().replace("’", "'")


def _search(patterns: list[Pattern], text: str) -> re.Match[str] | None:
    """The earliest match of any pattern in ``text``."""
    found = [m for p in patterns if (m := p.search(text))]
    return min(found, key=lambda m: m.start()) if found else None


def _quote(line: Line, at: int | None = None, *, planned: bool = False) -> str:
    """The sentence of ``line`` around position ``at`` (the whole turn if short)."""
    text = line.planned if planned else line.text
    if at is None or len(text) <= 160:
        return text if len(text) <= 200 else text[:197] + "..."
    starts = [0, *(m.end() for m in re.finditer(r"[.!?]\s+", text) if m.end() <= at)]
    begin = starts[-1]
    stop = re.search(r"[.!?](\s|$)", text[at:])
    return text[begin : at + (stop.end() if stop else len(text) - at)].strip()


_DIGIT = r"(?:\d+|zero|oh|one|two|three|four|five|six|seven|eight|nine)"
_DIGIT_RUN = re.compile(rf"\b{_DIGIT}(?:(?:,\s+|\s*-\s*|\s+){_DIGIT})*\b", re.IGNORECASE)


def mask_digits(text: str, keep: int = 3) -> str:
    """``text`` with every spoken run of more than ``keep`` digits masked ("9 4 1 0 7",
    "nine four one zero seven", "4111-2222-..." -> "#####"): evidence quotes are stored
    and shown, and must not carry card numbers or verification answers."""

    def mask(match: re.Match[str]) -> str:
        count = sum(len(t) if t.isdigit() else 1 for t in re.findall(_DIGIT, match.group(0), re.I))
        return "#" * count if count > keep else match.group(0)

    return _DIGIT_RUN.sub(mask, text)


def _evidence(
    line: Line, note: str = "", match: re.Match[str] | None = None, **kw: Any
) -> Evidence:
    quote = _quote(line, match.start() if match else None, **kw)
    return Evidence(line.index, mask_digits(quote), note)


_DIGIT_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3",
                "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
                "nine": "9"}  # fmt: skip


def digit_runs(text: str) -> list[str]:
    """Digit sequences spoken in ``text``: "4 5 6 7", "4567", "four five six seven" and
    "9-4-1-0-7" are each one run; words or punctuation other than - and space end a run."""
    runs, current = [], ""
    for token in re.findall(r"\d+|[a-z]+|[^\s\-]", _lower(text)):
        if token.isdigit():
            current += token
        elif token in _DIGIT_WORDS:
            current += _DIGIT_WORDS[token]
        else:
            if current:
                runs.append(current)
            current = ""
    return [*runs, current] if current else runs


_POSITIVE = re.compile(
    r"\b(thanks?|thank you|great|perfect|appreciate|wonderful|helpful|awesome|excellent|"
    r"brilliant|lovely|fantastic|amazing|happy)\b"
)
_SOUR = re.compile(
    r"\b(thanks for nothing|no thanks to you|rude|never calling again|waste of my time)\b"
)


def caller_valence(text: str) -> float:
    """How positive a caller turn sounds, in [-3, 1]: thanks and praise up to +1, the anger
    lexicon's score (``voicebot.handoff.sentiment``) and sarcasm ("thanks for nothing") down.
    Zero is neutral."""
    lowered = _lower(text)
    sour = len(_SOUR.findall(lowered))
    positive = 0.0 if sour else min(1.0, 0.5 * len(_POSITIVE.findall(lowered)))
    return round(max(-3.0, positive - analyze(text).anger - sour), 2)


# --- settings --------------------------------------------------------------------------------


class Settings(BaseModel):
    """A criterion's settings in a form (beside ``weight``, ``critical``, ``judge``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _patterns(*regexes: str) -> Any:
    return Field(default_factory=lambda: [re.compile(r) for r in regexes])


class GreetingSettings(Settings):
    company: str = Field(min_length=1)  # the name the speaker must say
    greetings: list[Pattern] = _patterns(
        r"\b(hello|hi|hey|good (morning|afternoon|evening)|welcome)\b",
        r"\bthanks? (you )?for (calling|holding|waiting|your patience)\b",
    )


# Questions whose answers are secrets (identity checks): no_sensitive_readback must not hear
# the answer said back, verified_before_account_detail hears an accepted answer as a check.
_SECRET_QUESTIONS = (
    r"\bzip( code)?\b", r"\bpostcode\b", r"\bpin\b", r"\bcard number\b",
    r"\bsecurity (code|question|answer)\b", r"\bsocial security\b", r"\bdate of birth\b",
    r"\bpass(word|code)\b", r"\baccount number\b", r"\bcvv\b",
)  # fmt: skip


_NUMBER_WORDS = f"({'|'.join([*UNITS, *TEENS, *TENS, *SCALES])})"  # the dialog's number words


class VerifiedSettings(Settings):
    """An account detail is the pack's wording (``details``: "there's a hold", "you're on the
    gold plan") or, in any pack, a figure (an amount of money, data or minutes) in a statement
    to the caller about their account ("your checking has...", "you've used...", "I can
    see..."). Prices anyone may hear are not details: they name no "your", or are rates
    ("ten dollars a day")."""

    details: list[Pattern]  # the pack's wording of account details that carry no figure
    figures: list[Pattern] = _patterns(
        r"\$\s?\d",
        rf"(\d|\b{_NUMBER_WORDS}) (dollars?|cents|euros?|pounds|yuan|gigabytes?|megabytes?|gb|"
        r"minutes|texts)\b(?! (a|per|each) (day|week|month|year)\b)",  # a rate is a price
    )
    about_the_account: list[Pattern] = _patterns(
        r"\byour\b", r"\bi can see\b",
        r"\byou('ve| have)? (got|used|made|spent|went|paid|owe|received|sent)\b",
    )  # fmt: skip
    verified: list[Pattern] = _patterns(
        r"\byou('re| are) (now |all )?verified\b",
        r"\bthanks?( you)? for (verifying|confirming (that|your identity|your details))\b",
        r"\bidentity (is )?(verified|confirmed)\b",
        r"\bi('ve| have) (now )?(verified|confirmed) (you|it's you|your (identity|account"
        r"|details))\b",
        r"\byou('ve| have) passed (security|verification|the security)\b",
    )  # fmt: skip
    secret_questions: list[Pattern] = _patterns(*_SECRET_QUESTIONS)
    # The speaker's reply to an answered secret question that accepts it ("that matches").
    accepted: list[Pattern] = _patterns(
        r"\b(matches|checks out|(is|'s) (correct|right)|(all )?checked)\b",
    )


class SensitiveSettings(Settings):
    # Questions whose answers are secrets: the caller's answer must not be said back.
    prompts: list[Pattern] = _patterns(*_SECRET_QUESTIONS)
    min_digits: int = Field(default=4, ge=1)  # a shorter answer is not worth flagging
    card_digits: int = Field(default=12, ge=6)  # a run this long is a card or account number
    disclosures: list[Pattern] = _patterns(
        r"\b(pin|passcode|password|security code|cvv)( number)? (is|was)\b[^.?!]*\d",
    )


class ActionSettings(Settings):
    actions: list[Pattern]  # what the speaker says when an action was carried out
    # In any pack: a sentence that opens by saying it is done ("Done, the dispute is open").
    done: list[Pattern] = _patterns(
        r"(^|[.!?]\s+)((okay|ok|right|great|perfect),? )?(all )?done\b", r"\bthat's (all )?done\b"
    )
    # Yes/no questions about the action ("How can I help?" is not one).
    confirmations: list[Pattern] = _patterns(
        r"\b(shall|should) i\b", r"\b(do|would) you (want|like) me to\b",
        r"\bis (that|this) (right|correct|ok|okay)\b", r"\bwas that (purchase )?yours\b",
        r"\bdo you confirm\b", r"\bare you sure\b", r"\b(can|may) i go ahead\b",
        r"\bis it (ok|okay) (if|to)\b",
    )  # fmt: skip


class FurtherHelpSettings(Settings):
    offers: list[Pattern] = _patterns(
        r"\banything else\b", r"\bwhat else can i\b", r"\bsomething else\b",
        r"\bany other (questions?|way)\b", r"\bhelp (you )?with anything\b",
    )  # fmt: skip


class EmpathySettings(Settings):
    anger: float = Field(default=0.5, gt=0)  # anger score of a caller turn that needs empathy
    complaint_intents: list[str] = Field(default_factory=lambda: ["complaint"])
    complaints: list[Pattern] = _patterns(
        r"\bcomplain", r"\bnot happy\b", r"\bunhappy\b",
        r"\bnobody (has |ever )?(fixed|helped|called)",
        r"\b(is|are|was|been) (really |so |very )?(bad|poor|rubbish|a mess)\b",
        r"\bwait\b.*\bi (said|asked|told you)\b", r"\bi (didn't|did not) (ask|want|agree)\b",
    )  # fmt: skip
    empathy: list[Pattern] = _patterns(
        r"\bsorry\b", r"\bapologi[sz]e\b", r"\bi understand\b", r"\bi can see why\b",
        r"\bi hear you\b", r"\bthat (sounds|must be) (frustrating|worrying|stressful|difficult|"
        r"annoying|upsetting|hard)\b", r"\bi know how\b", r"\bthank you for (your patience|"
        r"telling us|bearing with)\b",
    )  # fmt: skip
    # Apologies that are not empathy: the bot excusing itself for not understanding.
    not_empathy: list[Pattern] = _patterns(
        r"\bsorry,? i (didn't|did not|couldn't|could not) (quite )?(catch|get|understand|hear)",
        r"\bsorry,? (could|can|would) you (say|repeat)",
    )


class HandoffSettings(Settings):
    asks_for_person: list[Pattern] = _patterns(
        r"\b(speak|talk|transfer|put me through|connect me)\b.*\b(person|human|agent|someone|"
        r"somebody|representative|operator|manager|supervisor|real)\b",
        r"\b(a|real|live) (person|human|agent)\b", r"\b(representative|operator)\b",
    )  # fmt: skip
    anger: float = Field(default=1.0, gt=0)  # a clearly angry turn
    low_confidence: float = Field(default=0.6, gt=0, le=1)  # intent confidence below: unsure
    low_logprob: float = -1.0  # recognizer log-prob below: misheard
    repeats: int = Field(default=2, ge=1)  # failed bot turns that show repeated failure


class SilenceSettings(Settings):
    max_silence_s: float = Field(default=5.0, gt=0)


class TalkOverSettings(Settings):
    tolerance_s: float = Field(default=0.3, ge=0)  # overlap shorter than this is turn-taking
    max_overlaps: int = Field(default=0, ge=0)


class ProhibitedSettings(Settings):
    phrases: list[Pattern] = Field(min_length=1)


class SentimentSettings(Settings):
    window: int = Field(default=1, ge=1)  # caller turns averaged at each end
    tolerance: float = Field(default=0.25, ge=0)  # how much more negative the end may be


# --- the rules -------------------------------------------------------------------------------


def _no_speaker(part: Part) -> Outcome | None:
    if not part.speaker_lines:
        return Outcome(Verdict.NA, f"the {part.speaker} said nothing")
    return None


def greeting(part: Part, s: GreetingSettings) -> Outcome:
    if (silent := _no_speaker(part)) is not None:
        return silent
    first = part.speaker_lines[0]
    text = first.meant
    greeted = _search(s.greetings, text)
    named = _lower(s.company) in text
    if greeted and named:
        return Outcome(Verdict.PASS, f"greeted and named {s.company}", (_evidence(first),))
    missing = " and ".join(
        what for what, ok in (("a greeting", greeted), (f"the company name ({s.company})", named))
        if not ok
    )  # fmt: skip
    return Outcome(Verdict.FAIL, f"the first turn lacks {missing}", (_evidence(first),))


_SENTENCE = re.compile(r"(?:[^.?!]|\.(?=\d))+[.?!]*")  # "3.5 gigabytes" is one sentence


def _account_detail(text: str, s: VerifiedSettings) -> re.Match[str] | None:
    """The first account detail in ``text`` (see VerifiedSettings), or None."""
    found = [m] if (m := _search(s.details, text)) else []
    for sentence in _SENTENCE.finditer(text):
        a, b = sentence.span()
        if sentence.group().rstrip().endswith("?"):
            continue  # "would you like me to pay the 50 dollars?" tells nothing
        if any(p.search(text, a, b) for p in s.about_the_account):
            figures = [m for p in s.figures if (m := p.search(text, a, b))]
            if figures:
                found.append(min(figures, key=lambda m: m.start()))
                break
    return min(found, key=lambda m: m.start()) if found else None


def verified_before_account_detail(part: Part, s: VerifiedSettings) -> Outcome:
    verified_at: Evidence | None = None
    for line in part.before:
        if line.role != "caller" and (m := _search(s.verified, line.meant)):
            verified_at = _evidence(line, "verified earlier in the call", m, planned=True)
    shown: Evidence | None = None
    asked = answered = False  # a secret question was put; the caller answered it
    for line in part.lines:
        if line.role == "caller":
            answered, asked = asked, False
            continue
        if line.role != part.speaker:
            continue
        text = line.said
        detail = _account_detail(text, s)
        check = _search(s.verified, line.meant) or (
            _search(s.accepted, line.meant) if answered else None
        )
        answered = False
        asked = _search(s.secret_questions, line.meant) is not None
        if verified_at is None and check and (detail is None or check.start() < detail.start()):
            verified_at = _evidence(line, "identity verified", check, planned=True)
        if detail is None:
            continue
        if verified_at is None:
            leak = _evidence(line, "account detail before verification", detail)
            return Outcome(
                Verdict.FAIL, "gave an account detail before verifying the caller", (leak,)
            )
        shown = shown or _evidence(line, "first account detail", detail)
    if shown is None:
        return Outcome(Verdict.NA, "no account detail was given")
    assert verified_at is not None
    return Outcome(
        Verdict.PASS, "verified the caller before any account detail", (verified_at, shown)
    )


def no_sensitive_readback(part: Part, s: SensitiveSettings) -> Outcome:
    if (silent := _no_speaker(part)) is not None:
        return silent
    secrets: dict[str, Line] = {}  # digits the caller gave as a secret -> their turn
    asked = False
    leaks: list[Evidence] = []
    scored = len(part.before)  # earlier turns only tell which caller answers are secrets
    for position, line in enumerate((*part.before, *part.lines)):
        if line.role == "caller":
            digits = parse_digits(line.text) or ""
            if (asked and len(digits) >= s.min_digits) or len(digits) >= s.card_digits:
                secrets[digits] = line
            asked = False
            continue
        asked = _search(s.prompts, line.meant) is not None
        if line.role != part.speaker or position < scored:
            continue
        for run in digit_runs(line.text):
            if len(run) >= s.card_digits:
                leaks.append(_evidence(line, f"said a {len(run)}-digit number"))
            elif said := next((d for d in secrets if d in run), None):
                note = f"repeated the caller's answer of turn {secrets[said].index}"
                leaks.append(_evidence(line, note))
        if m := _search(s.disclosures, line.said):
            leaks.append(_evidence(line, "disclosed a secret", m))
    if leaks:
        return Outcome(Verdict.FAIL, "read sensitive data back", tuple(leaks))
    return Outcome(Verdict.PASS, "no sensitive data was said back")


def confirmed_before_action(part: Part, s: ActionSettings) -> Outcome:
    confirmed: Evidence | None = None
    asking = False
    actions: list[Evidence] = []
    for line in part.lines:
        if line.role == "caller":
            if asking and parse_yes_no(line.text):
                confirmed = _evidence(line, "the caller said yes")
            asking = False
            continue
        if m := _search([*s.actions, *s.done], line.meant):
            if confirmed is None:
                note = "action without the caller's yes"
                return Outcome(
                    Verdict.FAIL,
                    "carried out an action without confirming it first",
                    (_evidence(line, note, m, planned=True),),
                )
            actions += [confirmed, _evidence(line, "action", m, planned=True)]
            confirmed = None
        asking = _search(s.confirmations, line.meant) is not None
    if not actions:
        return Outcome(Verdict.NA, "no action was carried out")
    return Outcome(Verdict.PASS, "every action was confirmed first", tuple(actions))


def offered_further_help(part: Part, s: FurtherHelpSettings) -> Outcome:
    if part.handoff_reason is not None:
        return Outcome(Verdict.NA, "the part ended in a handoff: the next person offers")
    if part.ended_by in SERVER_ENDINGS | {"timeout"} or not part.caller_lines:
        return Outcome(Verdict.NA, "the call did not get to a close")
    speaker = part.speaker_lines
    if not speaker:
        return Outcome(Verdict.NA, f"the {part.speaker} said nothing")
    if speaker[-1].kind == "reprompt" and part.ended_by == "bot":
        return Outcome(Verdict.NA, "the caller went silent; the call ended on a re-prompt")
    if part.ended_by == "caller" and speaker[-1].kind in _STILL_TRYING:
        return Outcome(Verdict.NA, "the caller hung up while the request was still open")
    for line in speaker:
        if m := _search(s.offers, line.meant):
            return Outcome(
                Verdict.PASS, "offered further help", (_evidence(line, "", m, planned=True),)
            )
    return Outcome(
        Verdict.FAIL,
        "never asked whether the caller needed anything else",
        (_evidence(speaker[-1]),),
    )


_STILL_TRYING = ("fallback", "reprompt", "question")  # a bot turn that waits on the caller


def empathy_on_complaint(part: Part, s: EmpathySettings) -> Outcome:
    evidence: list[Evidence] = []
    triggers = 0
    for i, line in enumerate(part.lines):
        if line.role != "caller" or not _complains(line, s):
            continue
        reply = next((x for x in part.lines[i + 1 :] if x.role == part.speaker), None)
        if reply is None:
            continue  # the caller hung up on it
        triggers += 1
        said = _search(s.empathy, _without(s.not_empathy, reply.meant))
        if said is None:
            why = "no empathy in the reply to a complaint"
            return Outcome(
                Verdict.FAIL,
                why,
                (_evidence(line, "the complaint"), _evidence(reply, "the reply", planned=True)),
            )
        evidence += [
            _evidence(line, "the complaint"),
            _evidence(reply, "empathy", said, planned=True),
        ]
    if not triggers:
        return Outcome(Verdict.NA, "the caller did not complain or sound upset")
    return Outcome(Verdict.PASS, "acknowledged every complaint", tuple(evidence))


def _without(patterns: list[Pattern], text: str) -> str:
    """``text`` with the spans of ``patterns`` blanked out (same length: positions hold)."""
    for pattern in patterns:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


def _complains(line: Line, s: EmpathySettings) -> bool:
    return (
        analyze(line.text).anger >= s.anger
        or line.intent in s.complaint_intents
        or _search(s.complaints, line.said) is not None
    )


def correct_handoff(part: Part, s: HandoffSettings) -> Outcome:
    caller = part.caller_lines
    asked = [line for line in caller if _asks_for_person(line, s)]
    reason = part.handoff_reason
    if reason is None:
        if len(asked) >= 2:
            why = f"the caller asked for a person {len(asked)} times and was not transferred"
            return Outcome(Verdict.FAIL, why, tuple(_evidence(line) for line in asked))
        return Outcome(Verdict.NA, "no handoff, and none was asked for")
    signals = _handoff_signals(part, s, asked)
    if reason not in signals:
        return Outcome(Verdict.NA, f"handoff reason {reason!r} is not one this check knows")
    if signals[reason]:
        return Outcome(Verdict.PASS, f"{reason} fits the call", tuple(signals[reason]))
    last = caller[-1:] or part.speaker_lines[-1:]
    present = [r for r, ev in signals.items() if ev]
    better = f"; the call shows {', '.join(present)}" if present else ""
    return Outcome(
        Verdict.FAIL,
        f"handed off as {reason}, which the call does not show{better}",
        tuple(_evidence(line) for line in last),
    )


_NOT_REQUESTS = (None, "affirm", "deny", "goodbye", "out_of_scope")


def _asks_for_person(line: Line, s: HandoffSettings) -> bool:
    refuses = re.search(r"\b(no|don't|do not|not)\b.{0,20}\b(person|human|agent)\b", line.said)
    return not refuses and (
        line.intent == "speak_to_agent" or _search(s.asks_for_person, line.said) is not None
    )


def _handoff_signals(
    part: Part, s: HandoffSettings, asked: list[Line]
) -> dict[str, list[Evidence]]:
    """For each handoff reason, the turns that show it (empty: the call does not show it)."""
    caller = part.caller_lines
    angry = [line for line in caller if analyze(line.text).anger >= s.anger]
    total = sum(analyze(line.text).anger for line in caller)
    if not angry and total >= 2 * s.anger:
        angry = [line for line in caller if analyze(line.text).anger > 0]
    unsure = [
        line
        for line in caller[-2:]
        if not line.keypad
        and (
            line.intent == "out_of_scope"
            or (line.confidence is not None and line.confidence < s.low_confidence)
            or (line.asr_logprob is not None and line.asr_logprob < s.low_logprob)
        )
    ]
    # The handoff is the answer to one more failed turn: one re-prompt before it is two.
    failed = [line for line in part.speaker_lines if line.kind in ("fallback", "reprompt")]
    if len(failed) + 1 < s.repeats:
        failed = []
    intents = [line.intent for line in caller if line.intent not in _NOT_REQUESTS]
    repeated = [line for line in caller if intents.count(line.intent) > s.repeats]
    return {
        "caller_request": [_evidence(line, "asked for a person") for line in asked],
        "negative_sentiment": [_evidence(line, "angry") for line in angry],
        "low_confidence": [_evidence(line, "not understood") for line in unsure],
        "repeated_failure": [
            *(_evidence(line, "failed turn") for line in failed),
            *(_evidence(line, "asked again") for line in repeated),
        ],
    }


def no_long_silence(part: Part, s: SilenceSettings) -> Outcome:
    """Dead air the caller sits through: from the caller's last word to the speaker's
    answer, and between two turns of the speaker (a lookup without a word), but not the
    caller's own silence after being asked something."""
    gaps: list[Evidence] = []
    measured = 0
    for before, after in zip(part.lines, part.lines[1:], strict=False):
        if after.role != part.speaker or _asks(before):
            continue  # the caller's own pause (not answering a question) is theirs
        measured += 1
        gap = after.start - before.end
        if gap > s.max_silence_s:
            gaps.append(_evidence(after, f"{gap:.1f} s of silence after turn {before.index}"))
    if not measured:
        return Outcome(Verdict.NA, f"the {part.speaker} never answered the caller")
    if gaps:
        return Outcome(
            Verdict.FAIL, f"left the caller in silence over {s.max_silence_s:g} s", tuple(gaps)
        )
    return Outcome(Verdict.PASS, f"answered within {s.max_silence_s:g} s every time")


def _asks(line: Line) -> bool:
    """A speaker turn that leaves the caller to talk (a question, a re-prompt)."""
    return line.role != "caller" and (
        line.kind in _STILL_TRYING or line.planned.rstrip().endswith("?")
    )


def no_talk_over(part: Part, s: TalkOverSettings) -> Outcome:
    if (silent := _no_speaker(part)) is not None:
        return silent
    overlaps = []
    for line in part.speaker_lines:
        for caller in part.caller_lines:
            if caller.start < line.start < caller.end - s.tolerance_s:
                early = caller.end - line.start
                note = f"started {early:.1f} s before the caller (turn {caller.index}) finished"
                overlaps.append(_evidence(line, note))
                break
    if len(overlaps) > s.max_overlaps:
        return Outcome(
            Verdict.FAIL, f"talked over the caller {len(overlaps)} time(s)", tuple(overlaps)
        )
    return Outcome(Verdict.PASS, "never started talking while the caller spoke", tuple(overlaps))


def prohibited_phrases(part: Part, s: ProhibitedSettings) -> Outcome:
    if (silent := _no_speaker(part)) is not None:
        return silent
    said = [(line, m) for line in part.speaker_lines if (m := _search(s.phrases, line.said))]
    if said:
        evidence = tuple(_evidence(line, f"said {m.group(0)!r}", m) for line, m in said)
        return Outcome(Verdict.FAIL, "used a prohibited phrase", evidence)
    return Outcome(Verdict.PASS, "no prohibited phrase")


def sentiment_ends(lines: list[Line], window: int) -> tuple[list[Line], list[Line]] | None:
    """The caller's first and last ``window`` spoken turns (fewer when the call is short,
    never overlapping); None with under two."""
    caller = [line for line in lines if line.role == "caller" and not line.keypad]
    if len(caller) < 2:
        return None
    size = min(window, len(caller) // 2)
    return caller[:size], caller[-size:]


def mean_valence(lines: list[Line]) -> float:
    return round(sum(caller_valence(line.text) for line in lines) / len(lines), 2)


def sentiment_end_vs_start(part: Part, s: SentimentSettings) -> Outcome:
    """Fails when the caller ends more negative than they started (thanks at the start
    and a neutral goodbye is not worse: only negativity counts against the call)."""
    ends = sentiment_ends(part.caller_lines, s.window)
    if ends is None:
        return Outcome(Verdict.NA, "too few caller turns to compare")
    first, last = ends
    start, end = mean_valence(first), mean_valence(last)
    evidence = tuple(
        _evidence(line, f"{label} {caller_valence(line.text):+.1f}")
        for label, group in (("start", first), ("end", last))
        for line in group
    )
    worse = max(0.0, -end) > max(0.0, -start) + s.tolerance
    trend = "better" if end > start else "worse" if end < start else "the same"
    verdict = Verdict.FAIL if worse else Verdict.PASS
    return Outcome(verdict, f"caller sentiment {start:+.1f} -> {end:+.1f} ({trend})", evidence)


# --- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str  # what a reviewer checks (shown on scorecards, asked of the LLM judge)
    settings: type[Settings]
    rule: Callable[[Part, Any], Outcome]
    parts: tuple[str, ...] = PARTS
    # The question for the LLM judge ({speaker} and the settings fill it); None: measured.
    llm_question: str | None = None


def _criteria(*items: Criterion) -> dict[str, Criterion]:
    return {item.name: item for item in items}


CRITERIA = _criteria(
    Criterion(
        "greeting",
        "greeted the caller and named the company in the first turn",
        GreetingSettings,
        greeting,
        llm_question="Did the {speaker}'s first turn greet the caller and name the company "
        "({company})?",
    ),
    Criterion(
        "verified_before_account_detail",
        "verified the caller's identity before giving any account detail",
        VerifiedSettings,
        verified_before_account_detail,
        llm_question="Did the {speaker} verify the caller's identity before giving any account "
        "detail (balances, transactions, bills, usage)? Answer na if no detail was given.",
    ),
    Criterion(
        "no_sensitive_readback",
        "never said sensitive data back (card numbers, verification answers, PINs)",
        SensitiveSettings,
        no_sensitive_readback,
        llm_question="Did the {speaker} avoid saying back sensitive data: full card or account "
        "numbers, PINs, or the caller's answers to security questions (the last four digits "
        "of a card are allowed)?",
    ),
    Criterion(
        "confirmed_before_action",
        "asked the caller to confirm before every action (block, pay, change, send)",
        ActionSettings,
        confirmed_before_action,
        llm_question="Before every action it carried out (blocking a card, a payment, a "
        "change to the account), did the {speaker} ask the caller to confirm and get a yes? "
        "Answer na if no action was carried out.",
    ),
    Criterion(
        "offered_further_help",
        "asked whether the caller needed anything else before the call ended",
        FurtherHelpSettings,
        offered_further_help,
        llm_question="Did the {speaker} ask whether the caller needed anything else before the "
        "call ended? Answer na if the {speaker} transferred the call.",
    ),
    Criterion(
        "empathy_on_complaint",
        "acknowledged with empathy every complaint or sign of upset",
        EmpathySettings,
        empathy_on_complaint,
        llm_question="Each time the caller complained or sounded upset, did the {speaker}'s "
        "reply show empathy (an apology or acknowledgement)? Answer na if the caller never "
        "complained.",
    ),
    Criterion(
        "correct_handoff",
        "handed the call to a person for a reason the call shows, and when asked to",
        HandoffSettings,
        correct_handoff,
        parts=("bot",),
        llm_question="The bot's handoff reason was: {reason}. Does the call show that reason "
        "(caller_request: the caller asked for a person; negative_sentiment: the caller was "
        "angry; low_confidence: the bot could not understand; repeated_failure: the bot "
        "failed several times)? Answer na if there was no handoff and none was asked for.",
    ),
    Criterion(
        "no_long_silence",
        "never left the caller waiting in silence longer than the limit",
        SilenceSettings,
        no_long_silence,
    ),
    Criterion(
        "no_talk_over",
        "never started talking while the caller was speaking",
        TalkOverSettings,
        no_talk_over,
    ),
    Criterion(
        "prohibited_phrases",
        "said none of the form's prohibited phrases",
        ProhibitedSettings,
        prohibited_phrases,
        llm_question="Was the {speaker} polite and professional throughout, never rude, "
        "dismissive or blaming the caller?",
    ),
    Criterion(
        "sentiment_end_vs_start",
        "the caller sounded no worse at the end of the call than at its start",
        SentimentSettings,
        sentiment_end_vs_start,
        llm_question="Did the caller sound at least as positive at the end of the call as at "
        "its start?",
    ),
)
