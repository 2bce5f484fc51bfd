"""``voicebot qa run|show`` (score past calls, read a scorecard) and ``voicebot report kpis``."""

import argparse
import csv
import json
import re
import sys
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Any

from tqdm import tqdm

from voicebot.errors import NoCallsError, VoicebotError

_RELATIVE = re.compile(r"^(\d+)([dh])$")


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """``2026-11-01`` (midnight UTC), an ISO time, or ``7d`` / ``12h`` before now."""
    now = now or datetime.now(UTC)
    if match := _RELATIVE.match(text.strip()):
        amount, unit = int(match.group(1)), match.group(2)
        return now - (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise VoicebotError(
            f"not a date or time: {text!r} (use 2026-11-01, 2026-11-01T09:00, 7d or 12h)"
        ) from exc
    if len(text.strip()) == 10:
        moment = datetime.combine(moment.date(), time(), UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def register(commands: argparse._SubParsersAction) -> None:
    from voicebot.handoff.cli import add_store_options

    qa = commands.add_parser("qa", help="QA scorecards of calls (every call is scored as it ends)")
    sub = qa.add_subparsers(title="actions", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="score past calls with their pack's QA form")
    _range_options(run, since_required=False)
    add_store_options(run)
    run.set_defaults(func=_run)
    show = sub.add_parser("show", help="one call's scorecard, with the evidence")
    show.add_argument("call_id")
    show.add_argument("--json", action="store_true", help="the scorecard as JSON")
    add_store_options(show)
    show.set_defaults(func=_show)

    report = commands.add_parser("report", help="contact-center reports from the call store")
    reports = report.add_subparsers(title="reports", metavar="REPORT", required=True)
    kpis = reports.add_parser(
        "kpis",
        help="calls, containment, handoffs, handle time, FCR, CSAT, sentiment, failures",
        description="KPIs per day, pack and intent of the calls started in a range. "
        "Exit status 1 when the range holds no calls.",
    )
    _range_options(kpis, since_required=True)
    output = kpis.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="one CSV row per day, pack and intent")
    output.add_argument("--json", action="store_true", help="the whole report as JSON")
    add_store_options(kpis)
    kpis.set_defaults(func=_kpis)


def _range_options(parser: argparse.ArgumentParser, *, since_required: bool) -> None:
    parser.add_argument(
        "--since",
        required=since_required,
        metavar="WHEN",
        help="calls started from then: 2026-11-01, an ISO time, 7d or 12h ago"
        + ("" if since_required else " (default: all)"),
    )
    parser.add_argument("--until", metavar="WHEN", help="calls started before then (default: now)")
    parser.add_argument("--pack", help="only this pack's calls")


def _range(args: argparse.Namespace) -> tuple[datetime | None, datetime]:
    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else datetime.now(UTC)
    if since is not None and since >= until:
        raise VoicebotError(f"--since ({since.isoformat()}) must be before --until")
    return since, until


def _store(args: argparse.Namespace):  # -> Store
    from voicebot.store.store import Store

    return Store(args.db)


def _run(args: argparse.Namespace) -> int:
    from voicebot.dialog.llm import LLMClient, LLMConfig
    from voicebot.qa.scorecard import LLMJudge, QaScorer

    since, until = _range(args)
    llm = LLMConfig.from_env()
    store = _store(args)
    try:
        records = store.calls_between(
            since.isoformat() if since else None, until.isoformat(), args.pack
        )
        if not records:
            raise NoCallsError(f"no finished calls{_described(args)} to score")
        scorer = QaScorer(store, LLMJudge(LLMClient(llm)) if llm else None)
        scored: list[Any] = []
        skipped = 0
        for record in tqdm(records, desc="QA", unit="call", leave=False):
            if scorer.form(record.get("pack") or "") is None:
                skipped += 1
            elif (card := scorer.score(record)) is not None:
                scored.append(card)
        scorer.close()
    finally:
        store.close()
    print(_run_summary(scored, skipped))
    return 0 if scored else 1


def _described(args: argparse.Namespace) -> str:
    out = f" of pack {args.pack}" if args.pack else ""
    out += f" since {args.since}" if args.since else ""
    return out + (f" until {args.until}" if args.until else "")


def _run_summary(cards: list[Any], skipped: int) -> str:
    lines = [f"scored {len(cards)} call(s)" + (f"; {skipped} without a QA form" if skipped else "")]
    for part in ("bot", "agent"):
        scores = [p.score for c in cards if (p := c.part(part)) and p.score is not None]
        if scores:
            passed = sum(bool(c.part(part).passed) for c in cards if c.part(part))
            lines.append(
                f"  {part} part: mean score {sum(scores) / len(scores):.1f} over {len(scores)} "
                f"call(s), {passed} passed"
            )
    failed = Counter(name for c in cards for name in c.failed).most_common(8)
    if failed:
        lines.append("  most failed: " + ", ".join(f"{name} ({n})" for name, n in failed))
    return "\n".join(lines)


def _show(args: argparse.Namespace) -> int:
    from voicebot.qa.scorecard import Scorecard

    store = _store(args)
    try:
        data = store.get_scorecard(args.call_id)
    finally:
        store.close()
    if data is None:
        raise VoicebotError(
            f"no scorecard for call {args.call_id!r} (voicebot qa run scores calls)"
        )
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    card = Scorecard.from_dict(data)
    out = [f"call {card.call_id}  pack {card.pack}  form {card.form}  scored {card.scored_at}"]
    for part in card.parts:
        score = "-" if part.score is None else f"{part.score:.1f}"
        verdict = {True: "PASSED", False: "FAILED", None: "nothing to score"}[part.passed]
        critical = " (critical criterion failed)" if part.critical_failed else ""
        out.append(f"{part.part} part: {score}/100 {verdict}{critical}")
        for r in part.results:
            mark = {"pass": "ok  ", "fail": "FAIL", "na": "n/a "}[r.verdict.value]
            judge = " [llm]" if r.judge == "llm" else ""
            out.append(f"  {mark} {r.criterion:32} {r.weight:>4g}  {r.explanation}{judge}")
            for e in r.evidence:
                note = f" ({e.note})" if e.note else ""
                out.append(f"         turn {e.turn}: {e.quote!r}{note}")
    print("\n".join(out))
    return 0


def _kpis(args: argparse.Namespace) -> int:
    from voicebot.qa.kpis import CSV_COLUMNS, csv_row, kpi_report

    since, until = _range(args)
    assert since is not None  # --since is required here
    store = _store(args)
    try:
        report = kpi_report(store, since, until, args.pack)
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_row(row) for row in report.rows)
    else:
        print(_kpi_text(report))
    return 0


def _kpi_text(report: Any) -> str:
    def num(value: float | None, fmt: str = ".2f") -> str:
        return "-" if value is None else format(value, fmt)

    t = report.total
    handoffs = ", ".join(f"{r} {v:.1%}" for r, v in t.handoff_rate.items()) or "none"
    out = [
        f"{t.calls} call(s) from {report.since} to {report.until}"
        + (f", pack {report.pack}" if report.pack else ""),
        f"containment {t.containment:.1%}; handoffs: {handoffs}",
        f"handle time: bot {t.bot_handle_s:.1f} s, human {num(t.human_handle_s, '.1f')} s; "
        f"queue wait {num(t.queue_wait_s, '.1f')} s; abandonment {num(t.abandonment, '.1%')}",
        f"first-call resolution {num(t.fcr, '.1%')} ({t.fcr_calls} calls with caller ID); "
        f"CSAT {num(t.csat)} ({t.csat_answers} answers); QA score {num(t.qa_score, '.1f')} "
        f"({t.qa_calls} scored)",
        f"caller sentiment: start {num(t.sentiment_start)}, end {num(t.sentiment_end)}",
        "top failure reasons: "
        + (", ".join(f"{name} ({n})" for name, n in t.top_failures) or "none"),
        "",
        f"{'DAY':10}  {'PACK':8}  {'INTENT':28}  {'CALLS':>5}  {'CONTAIN':>7}  {'HANDOFF':>7}  "
        f"{'BOT S':>6}  {'FCR':>5}  {'CSAT':>4}  {'QA':>5}  {'SENT':>11}",
    ]
    for row in report.rows:
        handed = sum(row.handoffs.values()) / row.calls
        sentiment = f"{num(row.sentiment_start, '+.1f')}>{num(row.sentiment_end, '+.1f')}"
        out.append(
            f"{row.day:10}  {row.pack:8}  {row.intent[:28]:28}  {row.calls:>5}  "
            f"{row.containment:>7.0%}  {handed:>7.0%}  {row.bot_handle_s:>6.1f}  "
            f"{num(row.fcr, '.0%'):>5}  {num(row.csat, '.1f'):>4}  {num(row.qa_score, '.1f'):>5}  "
            f"{sentiment:>11}"
        )
    return "\n".join(out)
