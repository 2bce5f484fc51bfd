"""``voicebot serve``: load the models once and serve calls until interrupted."""

import argparse
import ipaddress
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from voicebot.errors import VoicebotError

if TYPE_CHECKING:
    from voicebot.auth import Accounts

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    from voicebot.cli import add_bot_options
    from voicebot.handoff.cli import add_store_options

    serve = commands.add_parser(
        "serve",
        help="serve Twilio, SIP and browser calls, the calls API and metrics",
        description="One process: Twilio Media Streams (/twilio/voice, /twilio/media), "
        "browser calls (/call), SIP calls (--sip-listen), /api/calls, /agent, /healthz and "
        "/metrics.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    serve.add_argument("--port", type=int, default=8080)
    add_bot_options(serve)
    serve.add_argument("--workers", type=int, default=2, help="model-compute threads")
    serve.add_argument("--max-calls", type=int, default=4, help="concurrent calls, then refuse")
    serve.add_argument(
        "--partial-interval-s",
        type=float,
        default=1.0,
        help="partial transcripts while a browser caller talks (0: none); phone lines never "
        "make them (nobody sees them), which leaves the CPU to more calls",
    )
    serve.add_argument("--transcripts", type=Path, help="also write DIR/<call_id>.json per call")
    serve.add_argument(
        "--recordings",
        type=Path,
        help="record every call to DIR/<call_id>.wav (stereo: caller left, bot right); "
        "tell callers, e.g. in the pack's greeting, where the law requires it",
    )
    serve.add_argument(
        "--twilio-auth-token-file",
        type=Path,
        metavar="PATH",
        help="Twilio's auth token, to check X-Twilio-Signature (default $TWILIO_AUTH_TOKEN "
        "or $TWILIO_AUTH_TOKEN_FILE); without one the Twilio routes refuse every request",
    )
    serve.add_argument("--twilio-auth-token", help=argparse.SUPPRESS)  # inline: warned
    serve.add_argument(
        "--insecure-twilio",
        action="store_true",
        help="without a token, take unsigned Twilio requests (a test line only: anyone can "
        "start calls; warned at every start)",
    )
    serve.add_argument(
        "--public-call",
        action="store_true",
        help="let anyone use the browser call page /call without signing in (rate-limited; "
        "the caller ID it sends is not trusted)",
    )
    serve.add_argument(
        "--metrics-token-file",
        type=Path,
        metavar="PATH",
        help="a bearer token that may read /metrics only, for Prometheus (default "
        "$VOICEBOT_METRICS_TOKEN or $VOICEBOT_METRICS_TOKEN_FILE)",
    )
    serve.add_argument("--public-url", help="https://host as Twilio sees it (behind a proxy)")
    serve.add_argument(
        "--worker-name",
        default=os.environ.get("VOICEBOT_WORKER_NAME"),
        metavar="NAME",
        help="this worker's server name in the balancer (deploy/haproxy.cfg), so an agent's "
        "softphone reaches the worker holding the caller ($VOICEBOT_WORKER_NAME)",
    )
    serve.add_argument(
        "--transfer-to",
        metavar="TARGET",
        help="the agents' line a handed-off caller is sent to (default: the pack's "
        "transfer_to): an E.164 number or a SIP URI (Twilio dials it; SIP callers get a "
        "REFER), or a Twilio queue name (the caller is enqueued)",
    )
    sip = serve.add_argument_group(
        "SIP",
        "answer SIP calls (G.711 RTP); credentials for --sip-register come from "
        "--sip-credentials FILE or $VOICEBOT_SIP_USERNAME and $VOICEBOT_SIP_PASSWORD",
    )
    sip.add_argument("--sip-listen", metavar="IP:PORT", help="e.g. 127.0.0.1:5060 (UDP)")
    sip.add_argument("--sip-register", metavar="URI", help="register this AOR, e.g. sip:bot@pbx")
    sip.add_argument("--sip-credentials", type=Path, metavar="FILE", help="username:password")
    sip.add_argument(
        "--sip-trust",
        action="append",
        default=[],
        metavar="CIDR",
        help="networks allowed to send SIP requests (required beyond loopback)",
    )
    serve.add_argument("--echo-cancellation", action="store_true", help="speakerphone callers")
    serve.add_argument("--noise-suppression", action="store_true", help="noisy callers")
    serve.add_argument("--echo-delay-ms", type=int, default=120, help="echo path hint")
    add_store_options(serve, webhooks=True)
    serve.add_argument(
        "--alert-queue-wait-s",
        type=float,
        default=None,
        metavar="S",
        help="alert supervisors once a handed-off caller has waited this long for an agent",
    )
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from voicebot.audio.apm import AudioCleanup
    from voicebot.audio.io import check_writable
    from voicebot.auth import Accounts, read_secret
    from voicebot.dialog.pack import load_pack
    from voicebot.errors import SipConfigError
    from voicebot.handoff.cli import open_service
    from voicebot.handoff.transfer import TransferTarget
    from voicebot.pipeline.bot import Bot, BotConfig
    from voicebot.pipeline.session import CallConfig
    from voicebot.privacy.retention import RetentionJob
    from voicebot.server import memory
    from voicebot.server.app import GracefulServer, create_app
    from voicebot.server.sip import SipService
    from voicebot.server.state import ServerConfig
    from voicebot.transports.sip import SipSettings, check_listen
    from voicebot.vad.endpointer import EndpointerConfig

    if args.max_calls < 1 or args.workers < 1 or args.partial_interval_s < 0:
        raise VoicebotError("--max-calls and --workers must be at least 1, intervals positive")
    if args.alert_queue_wait_s is not None and args.alert_queue_wait_s <= 0:
        raise VoicebotError(
            f"--alert-queue-wait-s must be positive (got {args.alert_queue_wait_s:g})"
        )
    if args.public_url and not args.public_url.startswith(("http://", "https://")):
        raise VoicebotError(f"--public-url must start with https:// (got {args.public_url!r})")
    if args.recordings is not None:
        check_writable(args.recordings / "recording.wav", "recordings")
    twilio_token = read_secret(
        "--twilio-auth-token",
        args.twilio_auth_token,
        args.twilio_auth_token_file,
        "TWILIO_AUTH_TOKEN",
    )
    # One agents' line for every transport: the flag, else the pack's (a typo fails here).
    if args.transfer_to:
        transfer_to = TransferTarget.parse(args.transfer_to)
    else:
        transfer_to = load_pack(args.pack).transfer_to
    config = ServerConfig(
        max_calls=args.max_calls,
        transfer_to=transfer_to,
        transcripts_dir=args.transcripts or (Path("var/calls") if args.no_db else None),
        recordings_dir=args.recordings,
        twilio_auth_token=twilio_token,
        insecure_twilio=args.insecure_twilio,
        public_call=args.public_call,
        metrics_token=read_secret(
            "--metrics-token", None, args.metrics_token_file, "VOICEBOT_METRICS_TOKEN"
        ),
        public_url=args.public_url,
        worker_name=args.worker_name,
        cleanup=AudioCleanup(args.echo_cancellation, args.noise_suppression, args.echo_delay_ms),
    )
    sip = None
    if args.sip_listen:
        sip = SipSettings.resolve(
            args.sip_listen,
            register=args.sip_register,
            credentials_file=args.sip_credentials,
            trust=tuple(args.sip_trust),
            transfer_to=transfer_to.sip_uri() if transfer_to else None,
        )
        check_listen(sip.listen)
    elif args.sip_register or args.sip_trust:
        raise SipConfigError("--sip-register and --sip-trust need --sip-listen")
    memory.limit_arenas()  # before the model threads start (voicebot.server.memory)
    service = open_service(args)  # fails fast on a bad database, before models load
    try:
        check_bind(args.host, Accounts(service.store) if service else None)
    except VoicebotError:
        if service is not None:
            service.close()
        raise
    bot = Bot(
        BotConfig(
            pack=args.pack,
            asr=args.asr,
            digits_asr=args.digits_asr,
            vad=args.vad,
            voice=args.voice,
            bank_db=args.bank_db,
            workers=args.workers,
            call=CallConfig(
                partial_interval_s=args.partial_interval_s,
                endpointer=EndpointerConfig(turn_model=args.turn_model),
            ),
        ),
        handoffs=service.writer if service else None,
        lockout=service.lockout(args.pack) if service else None,
    )
    # Calls past their retention are erased at start and then daily.
    data = [Path("var"), *filter(None, (config.transcripts_dir, config.recordings_dir))]
    retention = RetentionJob(service.store if service else None, data).start()
    if bot.pack.privacy.consent is None and config.recordings_dir is not None:
        log.warning("pack %s seeks no recording consent: no call is recorded", bot.pack.name)
    services = []
    if sip is not None:
        transfers = service.store.record_transfer if service else None
        services.append(SipService(sip, transfers).serving)
    if service is None:
        app = create_app(bot, config=config, services=services)
    else:
        service.start_webhooks()
        app = create_app(
            bot,
            config=config,
            history=service.store,
            sinks=[service.writer],
            store=service.store,
            services=services,
        )
    print(
        f"voicebot: serving on http://{args.host}:{args.port} "
        "(sign in: /login; agent desktop: /agent; browser calls: /call)"
    )
    if sip is not None:
        print(f"voicebot: answering SIP on {sip.listen[0]}:{sip.listen[1]} (UDP)")
    try:
        server = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            ws_max_size=65536,  # a media message is ~300 bytes; anything huge is refused (1009)
            proxy_headers=True,
        )
        memory.settle()  # what start-up built stays: the collector skips it from here on
        GracefulServer(server, app.state.voicebot).run()
    finally:
        retention.stop()
        bot.close()
        if service is not None:
            service.close()
    return 0


def check_bind(host: str, accounts: "Accounts | None") -> None:
    """Refuse to listen beyond loopback unless someone can sign in: everything but
    ``/healthz`` and the signed Twilio routes is behind sign-in, but an empty user table
    usually means a server started before anyone thought about who may use it."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        loopback = False
    if loopback or (accounts is not None and accounts.configured()):
        return
    why = "it runs --no-db" if accounts is None else "no user or token exists yet"
    raise VoicebotError(
        f"refusing to listen on {host} without sign-in ({why}): add one with "
        "`voicebot users add NAME --role admin`, or listen on 127.0.0.1"
    )
