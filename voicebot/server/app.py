"""``create_app``: one FastAPI app serving Twilio calls, browser calls, the calls API and
metrics, over one process-wide ``Bot`` (models loaded once, shared by every call).

Persistence and extra features plug in without touching the routes: ``history`` is where
finished calls are read back (``voicebot.store.Store``; in memory when None), ``sinks``
receive every call record as it changes (the store's writer), and ``routers`` are mounted
as they are; ``services`` run for the app's lifetime on its event loop (the SIP user agent:
``voicebot.server.sip.SipService.serving``). ``store`` holds the users, tokens, sessions and
audit log, and brings the agent desktop and the supervisor view; without one nobody can
sign in, so every protected route refuses. With a store, handed-off callers hold on the line
for an agent (``voicebot.handoff.bridge``; ``queue`` overrides the pack's ``queue:``
settings), unless a transfer target sends Twilio callers on (``ServerConfig.transfer_to``).

Every route declares who may call it (``voicebot.server.access``); the app-wide ``Gate``
enforces it, and request bodies are capped (``Limits.body_bytes``).
"""

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import uvicorn
from fastapi import APIRouter, Depends, FastAPI

from voicebot.auth import Accounts
from voicebot.handoff.assist import AssistService, assist_router
from voicebot.handoff.bridge import LiveQueue
from voicebot.handoff.config import QueueConfig
from voicebot.handoff.desk import desk_router
from voicebot.pipeline.bot import Bot
from voicebot.pipeline.record import RecordSink
from voicebot.server.access import Gate, SecurityHeaders, auth_router
from voicebot.server.api import api_router
from voicebot.server.browser import browser_router
from voicebot.server.calls import CallHistory, CallRegistry, MemoryHistory, TranscriptDir
from voicebot.server.metrics import MeteredTTS, metrics_router
from voicebot.server.state import ServerConfig, ServerState
from voicebot.server.supervisor import supervisor_router
from voicebot.server.twilio import twilio_router
from voicebot.store.store import Store

log = logging.getLogger(__name__)


def create_app(
    bot: Bot,
    *,
    config: ServerConfig | None = None,
    history: CallHistory | None = None,
    sinks: Sequence[RecordSink] = (),
    routers: Sequence[APIRouter] = (),
    services: Sequence[Callable[[ServerState], AbstractAsyncContextManager[object]]] = (),
    store: Store | None = None,
    queue: QueueConfig | None = None,
) -> FastAPI:
    config = config or ServerConfig()
    record_sinks = list(sinks)
    if history is None:
        memory = MemoryHistory()
        history, record_sinks = memory, [*record_sinks, memory]
    transcripts = TranscriptDir(config.transcripts_dir) if config.transcripts_dir else None
    if transcripts is not None:
        record_sinks.append(transcripts)
    if not isinstance(bot.tts, MeteredTTS):
        bot.tts = MeteredTTS(bot.tts)  # the TTS protocol reports no timings: measure here
    # Agent assist follows the turns of handed-off calls (its models: the bot's, when needed).
    assist = AssistService(None, store, bot) if store is not None else None
    if assist is not None:
        record_sinks.append(assist)
    state = ServerState(bot, config, CallRegistry(config.max_calls, history, record_sinks))
    accounts = Accounts(store, config.sessions) if store is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(warn_at_start, config, accounts)
        async with AsyncExitStack() as running:
            for service in services:
                await running.enter_async_context(service(state))
            yield
        if transcripts is not None:
            transcripts.close()

    app = FastAPI(
        title="voicebot",
        lifespan=lifespan,
        dependencies=[Depends(Gate(accounts, config.metrics_token, config.public_url))],
        max_body_size=config.limits.body_bytes,
        docs_url=None,  # no anonymous API browser: the routes are documented in the README
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(SecurityHeaders)
    app.state.voicebot = state
    if store is not None:
        state.queue = LiveQueue(store, bot, state.spoken, queue, worker=config.worker_name)
    desk = (
        [
            desk_router(assist.store, streams=state.event_streams, queue=state.queue),
            supervisor_router(assist.store, streams=state.event_streams),
            assist_router(assist, streams=state.event_streams),
        ]
        if assist is not None
        else []
    )
    for router in (
        auth_router(accounts, config.limits, config.public_url),
        twilio_router(state, store.record_transfer if store is not None else None),
        browser_router(state),
        api_router(state.calls, config.recordings_dir, store),
        metrics_router(),
        *desk,
        *routers,
    ):
        app.include_router(router)
    return app


def warn_at_start(config: ServerConfig, accounts: Accounts | None) -> None:
    """What an operator must know at every start: what is open that should not be."""
    if not config.twilio_auth_token:
        if config.insecure_twilio:
            log.warning(
                "--insecure-twilio: Twilio requests are NOT checked; anyone can start calls, "
                "and their caller ID is not used to identify callers"
            )
        else:
            log.warning("Twilio calls are refused: set TWILIO_AUTH_TOKEN to take them")
    if config.public_call:
        log.warning("--public-call: anyone who reaches this server can start browser calls")
    if accounts is None or not accounts.configured():
        log.warning("nobody can sign in yet: add a user (voicebot users add NAME --role admin)")


class GracefulServer(uvicorn.Server):
    """uvicorn that ends the calls in progress before it closes their sockets: each peer
    is told why (1012, "the server is shutting down") and each record says ``shutdown``,
    instead of both seeing a dropped connection. ``voicebot serve`` runs this."""

    def __init__(self, config: uvicorn.Config, state: ServerState, grace_s: float = 5.0) -> None:
        super().__init__(config)
        self._state = state
        self._grace_s = grace_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._state.calls.close(self._grace_s)
        await super().shutdown(sockets)
