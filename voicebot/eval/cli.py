"""`voicebot eval ...`: the evaluation suites, and the comparison CI gates on."""

import argparse
from pathlib import Path

from voicebot.audio.io import check_writable
from voicebot.tts.caller_voice import CALLER_VOICES, DEFAULT_VOICE
from voicebot.vad import DEFAULT_VAD, VAD_BACKENDS


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="run an evaluation suite and write a report")
    sub = evaluate.add_subparsers(title="suites", metavar="SUITE", required=True)

    asr = sub.add_parser("asr", help="WER, CER and real-time factor, offline and streaming")
    asr.add_argument("--manifest", type=Path, required=True, help="ASR manifest (JSONL)")
    asr.add_argument("--asr", default="tiny.en", help="tiny.en | base | model dir | hub id")
    asr.add_argument(
        "--mode",
        choices=("offline", "streaming", "both"),
        default="both",
        help="offline: plain faster-whisper on the whole file; streaming: the live-call "
        "VAD/ASR path; both (default): side by side, streaming is the headline",
    )
    asr.add_argument("--vad", default=DEFAULT_VAD, choices=VAD_BACKENDS, help="streaming VAD")
    asr.add_argument(
        "--pack", help="bias the streaming recognizer with this pack's vocabulary; default none"
    )
    asr.add_argument("--report", type=Path, required=True, help="report JSON to write")
    asr.set_defaults(func=_asr)

    intents = sub.add_parser("intents", help="intent accuracy, F1, OOS, calibration")
    intents.add_argument("--manifest", type=Path, required=True, help="intent manifest (JSONL)")
    intents.add_argument("--pack", default="bank", help="pack name or YAML path")
    intents.add_argument("--report", type=Path, required=True, help="report JSON to write")
    intents.set_defaults(func=_intents)

    calls = sub.add_parser("calls", help="whole simulated calls: task success, handoffs, latency")
    calls.add_argument(
        "--scenarios", type=Path, nargs="+", required=True, help="scenario folders or files"
    )
    calls.add_argument("--report", type=Path, required=True, help="report JSON to write")
    calls.add_argument(
        "--voices",
        default=DEFAULT_VOICE,
        metavar="matrix|VOICE",
        help=f"who calls: one caller voice for every scenario (default {DEFAULT_VOICE}; "
        f"one of {', '.join(CALLER_VOICES)}), or 'matrix': the scenarios take every "
        "voice family and line condition in turn",
    )
    calls.add_argument(
        "--line",
        metavar="SPEC",
        help="the phone line of every call, stages joined by '+' (e.g. alaw+babble-15+loss-2; "
        "default: mulaw, or the matrix's lines with --voices matrix)",
    )
    calls.add_argument(
        "--text",
        action="store_true",
        help="dry-run: the scenarios' reference text through the dialog (no audio, no ASR)",
    )
    calls.add_argument("--asr", default="tiny.en", help="tiny.en | base | model dir | hub id")
    calls.add_argument("--vad", default=DEFAULT_VAD, choices=VAD_BACKENDS)
    calls.add_argument(
        "--realtime", action="store_true", help="pace calls to the wall clock (default: fast)"
    )
    calls.add_argument(
        "--records", type=Path, metavar="DIR", help="also keep each call's record as DIR/NAME.json"
    )
    calls.set_defaults(func=_calls)

    turns = sub.add_parser(
        "turns", help="endpointing cut-offs and latency (fixed baseline, dialog-aware), barge-in"
    )
    turns.add_argument("--manifest", type=Path, required=True, help="turn manifest (JSONL)")
    turns.add_argument("--report", type=Path, required=True, help="report JSON to write")
    turns.add_argument("--asr", default="tiny.en", help="tiny.en | base | model dir | hub id")
    turns.add_argument("--vad", default=DEFAULT_VAD, choices=VAD_BACKENDS)
    turns.add_argument(
        "--asr-ms",
        type=float,
        metavar="MS",
        help="also score every policy charging each recognition MS of call time instead "
        "of its measured compute time (takes the machine's load out of the comparison)",
    )
    turns.add_argument(
        "--turn-model",
        metavar="NAME",
        help="also score dialog-aware endpointing with this audio end-of-turn model "
        "(smart-turn-v3.2, from the pipecat-ai wheel, or an .onnx path)",
    )
    turns.set_defaults(func=_turns)

    pii = sub.add_parser("pii", help="PII redaction: recall per type, precision, clean set")
    pii.add_argument("--manifest", type=Path, required=True, help="PII manifest (JSONL)")
    pii.add_argument("--report", type=Path, required=True, help="report JSON to write")
    pii.set_defaults(func=_pii)

    qa = sub.add_parser("qa", help="QA scorer against a reviewer's labels, per criterion and form")
    qa.add_argument("--labels", type=Path, required=True, help="labelled calls (JSONL)")
    qa.add_argument("--report", type=Path, required=True, help="report JSON to write")
    qa.set_defaults(func=_qa)

    digits = sub.add_parser(
        "digits", help="digit strings (ZIPs, last fours, phone and card numbers): exact match"
    )
    digits.add_argument("--manifest", type=Path, required=True, help="digit manifest (JSONL)")
    digits.add_argument("--report", type=Path, required=True, help="report JSON to write")
    digits.add_argument("--asr", default="tiny.en", help="tiny.en | base | model dir | hub id")
    digits.add_argument(
        "--digits-asr", help="a second recognizer for digit turns only (e.g. base); default none"
    )
    digits.add_argument(
        "--plain-decode",
        action="store_true",
        help="no digit-biased decode (to measure what it adds); default: the decode a digit "
        "question gets in a call",
    )
    digits.add_argument(
        "--voices", nargs="+", help="caller voices to speak each line (default: two per family)"
    )
    digits.add_argument("--line", default="mulaw", help="phone line condition, e.g. alaw+white-15")
    digits.add_argument("--vad", default=DEFAULT_VAD, choices=VAD_BACKENDS)
    digits.set_defaults(func=_digits)

    compare = sub.add_parser(
        "compare",
        help="what improved or regressed between two reports; exit 1 on a regression",
        description="Exit status: 0 no regression beyond tolerance, 1 regression, 2 bad input.",
    )
    compare.add_argument("base", type=Path, help="baseline report JSON")
    compare.add_argument("new", type=Path, help="new report JSON (same suite)")
    compare.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="NUMBER|METRIC=NUMBER",
        help="allowed worsening: a number sets it for every rate (default 0.01, absolute); "
        "METRIC=NUMBER for one metric (timings: relative, default 0.10); repeatable",
    )
    compare.set_defaults(func=_compare)


def _asr(args: argparse.Namespace) -> int:
    from voicebot.dialog.pack import load_pack
    from voicebot.eval.asr import MODES, evaluate_asr

    check_writable(args.report, "report")
    modes = MODES if args.mode == "both" else (args.mode,)
    vocabulary = load_pack(args.pack).vocabulary if args.pack else ()
    report = evaluate_asr(
        args.manifest, args.report, model=args.asr, modes=modes, vad=args.vad, vocabulary=vocabulary
    )
    print(f"{report['n']} utterances, {report['audio_s']:.1f} s of audio, ASR {args.asr}")
    for mode, scores in report["modes"].items():
        print(
            f"  {mode:>9}: WER {scores['wer']:.3f}  CER {scores['cer']:.3f}  "
            f"RTF {scores['rtf']:.3f}"
        )
    _print_issues_and_paths(report, args.report)
    return 0


def _intents(args: argparse.Namespace) -> int:
    from voicebot.dialog.cli import load_classifier
    from voicebot.eval.intents import evaluate_intents

    check_writable(args.report, "report")
    pack, classifier = load_classifier(args.pack)
    report = evaluate_intents(args.manifest, pack, classifier, args.report)
    print(
        f"{report['n']} utterances: accuracy {report['accuracy']:.3f}, macro-F1 "
        f"{report['macro_f1']:.3f}, OOS recall {report['oos_recall']:.3f} precision "
        f"{report['oos_precision']:.3f}, ECE {report['ece_in_scope']:.3f}, "
        f"{report['ms_per_utterance']:.1f} ms/utterance"
    )
    _print_issues_and_paths(report, args.report)
    return 0


def _calls(args: argparse.Namespace) -> int:
    from voicebot.eval.calls import CallOptions, evaluate_calls

    check_writable(args.report, "report")
    if args.records is not None:
        check_writable(args.records / "record.json", "records")
    options = CallOptions(
        asr=args.asr,
        vad=args.vad,
        voices=args.voices,
        line=args.line,
        realtime=args.realtime,
        records_dir=args.records,
        text=args.text,
    )
    report = evaluate_calls(args.scenarios, args.report, options)
    latency = report["latency_ms"]
    if report["mode"] == "text":
        print("text dry-run: reference text through the dialog, no audio, no ASR")
    print(
        f"{report['n']} calls: task success {report['task_success']:.3f}, intent accuracy "
        f"{report['intent_accuracy']:.3f}, handoff precision {report['handoff_precision']:.3f} "
        f"recall {report['handoff_recall']:.3f}, voice-to-voice p50 {latency['p50']:.0f} ms "
        f"p95 {latency['p95']:.0f} ms ({latency['n']} replies)"
    )
    if report["mode"] != "text":
        for key in ("family", "line"):
            groups = report[f"by_{key}"].items()
            print(
                f"by {key}: "
                + ", ".join(f"{g} {s['task_success']:.2f}/{s['n']}" for g, s in groups)
            )
    for item in report["items"]:
        if not item["passed"]:
            print(f"failed {item['name']}: {'; '.join(item['failures'])}")
    _print_issues_and_paths(report, args.report)
    return 0


def _turns(args: argparse.Namespace) -> int:
    from voicebot.eval.turns import evaluate_turns

    check_writable(args.report, "report")
    report = evaluate_turns(
        args.manifest,
        args.report,
        model=args.asr,
        vad=args.vad,
        asr_ms=args.asr_ms,
        turn_model=args.turn_model,
    )
    policy, base = report["policy"], report["baseline"]
    aware = (
        f"dialog-aware {policy['complete_ms']}/{policy['silence_timeout_ms']}/"
        f"{policy['incomplete_ms']} ms"
    )
    policies = [(f"fixed {base['silence_timeout_ms']} ms", base), (aware, report)]
    if "with_turn_model" in report:
        policies.append((f"{aware} + {args.turn_model}", report["with_turn_model"]))
    for name, scores in policies:
        latency = scores["endpoint_latency_ms"]
        print(
            f"{name}: false cut-offs {scores['false_cutoff_rate']:.3f} (pause set), "
            f"{scores['digit_cutoffs']} inside digit strings; endpoint latency p50 "
            f"{latency['p50']:.0f} ms p95 {latency['p95']:.0f} ms; final p50 "
            f"{scores['final_latency_ms']['p50']:.0f} ms"
        )
    for rule in ("before", "now"):
        b = report["barge_in"][rule]
        print(
            f"barge-in {rule}: false barge-ins {b['false_barge_in_rate']:.3f} of "
            f"{b['backchannels']} backchannels, missed {b['missed_rate']:.3f} of "
            f"{b['interruptions']} interruptions, bot silenced p50 {b['silenced_ms']['p50']:.0f} "
            f"ms, confirmed p50 {b['confirmed_ms']['p50']:.0f} ms"
        )
    _print_issues_and_paths(report, args.report)
    return 0


def _pii(args: argparse.Namespace) -> int:
    from voicebot.eval.pii import evaluate_pii

    check_writable(args.report, "report")
    report = evaluate_pii(args.manifest, args.report)
    recall = ", ".join(f"{kind} {value:.3f}" for kind, value in report["recall"].items())
    print(
        f"{report['n']} lines: precision {report['precision']:.3f}, recall {recall}; clean "
        f"lines untouched {report['clean_untouched']:.3f}; targets "
        + ("met" if report["meets_targets"] else "NOT met")
    )
    _print_issues_and_paths(report, args.report)
    return 0


def _qa(args: argparse.Namespace) -> int:
    from voicebot.eval.qa import evaluate_qa

    check_writable(args.report, "report")
    report = evaluate_qa(args.labels, args.report)
    print(
        f"{report['n']} calls, {report['answers']} answers: agreement {report['agreement']:.3f} "
        f"(target {report['target']}), kappa {report['kappa']}"
    )
    for name, scores in report["per_criterion"].items():
        print(f"  {name:32} {scores['agreement']:.3f}  ({len(scores['disagreements'])} disagree)")
    for split, scores in report["by_split"].items():
        print(
            f"  split {split}: agreement {scores['agreement']:.3f}, pass/fail agreement "
            f"{scores['outcome_agreement']:.3f} over {scores['calls']} calls"
        )
    _print_issues_and_paths(report, args.report)
    return 0


def _digits(args: argparse.Namespace) -> int:
    from voicebot.eval.digits import DigitOptions, evaluate_digits

    check_writable(args.report, "report")
    options = DigitOptions(
        asr=args.asr,
        digits_asr=args.digits_asr,
        biased=not args.plain_decode,
        line=args.line,
        vad=args.vad,
        **({"voices": tuple(args.voices)} if args.voices else {}),
    )
    report = evaluate_digits(args.manifest, args.report, options)
    kinds = ", ".join(f"{k} {g['exact_match']:.3f}" for k, g in report["by_kind"].items())
    print(
        f"{report['n']} answers: exact match {report['exact_match']:.3f} ({kinds}; without the "
        f"expected length {report['exact_match_without_length']:.3f}), digit error rate "
        f"{report['digit_error_rate']:.3f}, RTF {report['rtf']:.3f}"
    )
    for voice, group in report["by_voice"].items():
        print(f"  {voice:>14}: {group['exact_match']:.3f} ({group['n']})")
    _print_issues_and_paths(report, args.report)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from voicebot.eval.compare import compare, flipped_items, load_report, parse_tolerances

    rate_tolerance, overrides = parse_tolerances(args.tolerance)
    base, new = load_report(args.base), load_report(args.new)
    suite, changes = compare(base, new, rate_tolerance=rate_tolerance, overrides=overrides)
    print(f"{suite} report: {args.base} -> {args.new}")
    if base.get("n") != new.get("n"):
        print(f"note: the reports cover {base.get('n')} and {new.get('n')} items")
    for change in changes:
        print(change)
    worse, better = flipped_items(suite, base, new)
    for label, keys in (("now worse", worse), ("now better", better)):
        if keys:
            print(f"{label} ({len(keys)}): {', '.join(keys)}")
    regressions = [c.metric for c in changes if c.verdict == "regressed"]
    if regressions:
        print(f"REGRESSION beyond tolerance: {', '.join(regressions)}")
        return 1
    print("no regression beyond tolerance")
    return 0


def _print_issues_and_paths(report: dict, path: Path) -> None:
    for issue in report["issues"]:
        print(f"not evaluated: {issue}")
    print(f"wrote {path} and {path.with_suffix('.md')}")
