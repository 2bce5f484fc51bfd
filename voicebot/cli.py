"""The ``voicebot`` command line.

Every user-facing failure is a ``VoicebotError``: one clear line on stderr and a non-zero
exit status, never a traceback. ``--debug`` shows tracebacks for bug reports.
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from voicebot import __version__
from voicebot.errors import VoicebotError
from voicebot.vad import DEFAULT_VAD, VAD_BACKENDS


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from voicebot.privacy.redact import install_log_redaction

    install_log_redaction()  # no log line carries a card number, whoever writes it
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VoicebotError as exc:
        if args.debug:
            raise
        print(f"voicebot: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("voicebot: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    from voicebot.auth.cli import register as register_auth
    from voicebot.dialog.chat import register as register_chat
    from voicebot.dialog.cli import register as register_intents
    from voicebot.dialog.llm_server import register as register_llm
    from voicebot.eval.cli import register as register_eval
    from voicebot.handoff.cli import register as register_handoffs
    from voicebot.models.cli import register as register_models
    from voicebot.privacy.cli import register as register_privacy
    from voicebot.qa.cli import register as register_qa
    from voicebot.server.cli import register as register_serve

    parser = argparse.ArgumentParser(prog="voicebot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"voicebot {__version__}")
    parser.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _register_call(commands)
    register_chat(commands)
    register_intents(commands)
    register_llm(commands)
    register_eval(commands)
    register_models(commands)
    register_handoffs(commands)
    register_privacy(commands)
    register_qa(commands)
    register_serve(commands)
    register_auth(commands)
    return parser


def add_bot_options(parser: argparse.ArgumentParser) -> None:
    """The models and back office of a ``Bot``, shared by every command that runs calls."""
    parser.add_argument("--pack", default="bank", help="domain pack name or YAML path")
    parser.add_argument(
        "--asr",
        default="tiny.en",
        help="[auto:|faster-whisper:|torch:]MODEL, MODEL: tiny.en | base | model dir | hub id "
        "(torch: one batching Whisper engine for all calls, GPU when there)",
    )
    parser.add_argument(
        "--digits-asr",
        metavar="MODEL",
        help="a larger recognizer for digit answers only (ZIP, card digits, phone numbers), "
        "e.g. base: better digits from unfamiliar voices, about twice the wait on those turns",
    )
    parser.add_argument("--vad", default=DEFAULT_VAD, choices=VAD_BACKENDS)
    parser.add_argument(
        "--turn-model",
        metavar="NAME",
        help="audio end-of-turn model for free answers: smart-turn-v3.2 (the pipecat-ai "
        "wheel's file, installed with --no-deps) or an .onnx path; default: off",
    )
    parser.add_argument("--voice", default="joe", help="Piper voice name or .onnx path")
    parser.add_argument("--bank-db", default=":memory:", help="demo back office SQLite file")


def _register_call(commands: argparse._SubParsersAction) -> None:
    from voicebot.handoff.cli import add_store_options

    call = commands.add_parser(
        "call",
        help="run a whole simulated call on a caller recording",
        description="Greets, then streams CALLER.wav into the bot as a live caller would "
        "(20 ms frames), and writes what the bot said and heard.",
    )
    call.add_argument("caller", type=Path, help="caller audio (WAV/FLAC/OGG/MP3, any rate)")
    call.add_argument("--out", type=Path, help="stereo WAV: caller left, bot right")
    call.add_argument("--transcript", type=Path, help="JSON transcript (updated every turn)")
    add_bot_options(call)
    call.add_argument("--caller-id", help="phone number the call comes from (caller ID)")
    call.add_argument(
        "--realtime", action="store_true", help="pace the call in real time (default: fast)"
    )
    call.add_argument("--silence-timeout-ms", type=int, default=500, help="end-of-turn silence")
    call.add_argument("--max-call-seconds", type=float, default=900.0)
    call.add_argument("--quiet", action="store_true", help="do not print the transcript")
    add_store_options(call, webhooks=True)
    call.set_defaults(func=_run_call)


def _run_call(args: argparse.Namespace) -> int:
    from voicebot.audio.frames import SAMPLE_RATE
    from voicebot.audio.io import check_writable, load_audio, write_wav_atomic
    from voicebot.handoff.cli import open_service
    from voicebot.pipeline.bot import Bot, BotConfig
    from voicebot.pipeline.record import JsonFileSink, format_transcript
    from voicebot.pipeline.session import CallConfig
    from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller
    from voicebot.vad.endpointer import EndpointerConfig

    audio = load_audio(args.caller, max_seconds=args.max_call_seconds)
    for path, what in ((args.out, "bot audio"), (args.transcript, "transcript")):
        if path is not None:
            check_writable(path, what)
    if args.silence_timeout_ms <= EndpointerConfig.eager_ms:
        raise VoicebotError(f"--silence-timeout-ms must be above {EndpointerConfig.eager_ms} ms")
    call_config = CallConfig(
        endpointer=EndpointerConfig(
            silence_timeout_ms=args.silence_timeout_ms, turn_model=args.turn_model
        ),
        max_call_s=args.max_call_seconds + 120,
    )
    service = open_service(args)  # fails fast on a bad database, before models load
    bot = Bot(
        BotConfig(
            pack=args.pack,
            asr=args.asr,
            digits_asr=args.digits_asr,
            vad=args.vad,
            voice=args.voice,
            bank_db=args.bank_db,
            call=call_config,
        ),
        handoffs=service.writer if service else None,
        lockout=service.lockout(args.pack) if service else None,
    )
    caller = SimulatedCaller([CallerSegment(audio, Cue.BOT_DONE, 0.3)], realtime=args.realtime)
    # Partial transcripts are for someone watching: the live printer of a real-time call.
    # Otherwise nobody sees them, and they would take the CPU from the finals (on 2 cores a
    # partial in flight delays the end-of-turn transcript by its whole run).
    caller.shows_partials = args.realtime and not args.quiet
    sinks = [JsonFileSink(args.transcript)] if args.transcript else []
    if service is not None:
        sinks.append(service.writer)
    observer = _live_printer() if args.realtime and not args.quiet else None
    try:
        record = asyncio.run(
            bot.run_call(
                caller,
                realtime=args.realtime,
                sinks=sinks,
                observer=observer,
                caller_audio=str(args.caller),
                caller_id=args.caller_id,
                recording=str(args.out) if args.out else None,
            )
        )
    finally:
        bot.close()
        if service is not None:
            service.deliver_now()
            service.close()
    if args.out and record.recording:  # none when the caller did not consent
        write_wav_atomic(args.out, caller.stereo(), SAMPLE_RATE)
    if not args.quiet:
        print(format_transcript(record))
        latencies = record.summary()["voice_to_voice_ms"]
        if latencies:
            print(
                f"voice-to-voice: median {latencies[len(latencies) // 2]:.0f} ms "
                f"over {len(latencies)} replies"
            )
        for path in filter(None, (record.recording and args.out, args.transcript)):
            print(f"wrote {path}")
        if args.out and not record.recording:
            print(f"no recording written: consent {record.consent and record.consent['state']}")
    return 0


def _live_printer():
    """Prints partial and final transcripts as they happen (real-time calls), masked."""
    from voicebot.privacy.redact import redact_text

    def show(kind: str, event: object) -> None:
        if kind == "partial" and getattr(event, "text", ""):
            print(f"  ... {redact_text(event.text)}", flush=True)
        elif kind == "final":
            heard = redact_text(event.text) if event.text else f"<{event.dropped}>"
            print(f"  caller: {heard}", flush=True)
        elif kind == "bot_turn":
            print(f"  bot:    {event.text}", flush=True)
        elif kind == "barge_in":
            print("  (caller barged in: bot stopped)", flush=True)

    return show


if __name__ == "__main__":
    sys.exit(main())
