"""``create_app``: one FastAPI app serving Twilio calls, browser calls, the calls API and
metrics, over one process-wide ``Bot`` (models loaded once, shared by every call).

Persistence and extra features plug in without touching the routes: ``history`` is where
finished calls are read back (``voicebot.store.Store``; in memory when None), ``sinks``
receive every call record as it changes (the store's writer), and ``routers`` are mounted
as they are (the agent desktop); ``services`` run for the app's lifetime on its event
loop (the SIP user agent: ``voicebot.server.sip.SipService.serving``).
"""

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI

from voicebot.pipeline.bot import Bot
from voicebot.pipeline.record import RecordSink
from voicebot.server.api import api_router
from voicebot.server.browser import browser_router
from voicebot.server.calls import CallHistory, CallRegistry, MemoryHistory, TranscriptDir
from voicebot.server.metrics import MeteredTTS, metrics_router
from voicebot.server.state import ServerConfig, ServerState
from voicebot.server.twilio import twilio_router


def create_app(
    bot: Bot,
    *,
    config: ServerConfig | None = None,
    history: CallHistory | None = None,
    sinks: Sequence[RecordSink] = (),
    routers: Sequence[APIRouter] = (),
    services: Sequence[Callable[[ServerState], AbstractAsyncContextManager[object]]] = (),
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
    state = ServerState(bot, config, CallRegistry(config.max_calls, history, record_sinks))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as running:
            for service in services:
                await running.enter_async_context(service(state))
            yield
        if transcripts is not None:
            transcripts.close()

    app = FastAPI(title="voicebot", lifespan=lifespan)
    app.state.voicebot = state
    for router in (
        twilio_router(state),
        browser_router(state),
        api_router(state.calls, config.recordings_dir),
        metrics_router(),
        *routers,
    ):
        app.include_router(router)
    return app
