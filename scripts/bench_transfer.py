"""Benchmark: live transfer to the built-in desktop, as the caller hears it.

One real-time call per round on a real uvicorn server (real VAD, Whisper, classifier,
policy, SQLite store, Piper): a faithful Twilio peer asks for a person and is held; an agent
(a Python client doing what the softphone page does: sign-in, claim, ``/desk/bridge``
WebSocket, 20 ms PCM16 frames at 16 kHz in real time) claims the card and speaks at once.

- **decision -> first hold audio**: the handoff reply is ready (call time, from the
  record) -> the first audio the caller hears after it (the transfer message), and -> the
  first hold message (it follows the transfer message);
- **claim -> caller hears the agent**: the claim request is sent (wall) -> the peer plays
  the first voiced frame of the agent's first word (wall, 20 ms resolution);
- **bridge mouth to ear**: a tone burst leaves one side (wall) -> first voiced audio on the
  other: agent -> caller (includes the peer's 60 ms jitter buffer, as a phone's would) and
  caller -> agent (the softphone socket, before the page's playout).

    .venv/bin/python scripts/bench_transfer.py --out build/bench/transfer.json
"""

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import Server
from tests.signin import TWILIO_TOKEN, add_user, signed_in
from tests.softphone import Softphone
from voicebot.audio.frames import SAMPLE_RATE
from voicebot.handoff.config import QueueConfig
from voicebot.pipeline.bot import Bot, BotConfig
from voicebot.server import ServerConfig, create_app
from voicebot.server.access import COOKIE
from voicebot.server.twilio_peer import TwilioPeer
from voicebot.store import Store, StoreWriter
from voicebot.tts.caller_voice import render_caller
from voicebot.tts.piper import PiperTTS

AGENT_SAYS = "Hello, this is Anna from the bank. How can I help you today?"


def tone(seconds: float = 0.2, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


async def voiced_after(peer: TwilioPeer, tick: int, timeout: float = 60.0) -> float:
    """Wall time the peer plays its first voiced frame at or after ``tick`` (5 ms polling)."""
    deadline = time.monotonic() + timeout
    while not any(t >= tick for t in peer.log.bot_voiced):
        if time.monotonic() > deadline:
            raise TimeoutError("the caller heard nothing")
        await asyncio.sleep(0.005)
    return time.monotonic()


def wait_for(store: Store, state: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in store.list_handoffs():
            if (row["packet"].get("queue") or {}).get("state") == state:
                return row
        time.sleep(0.01)
    raise TimeoutError(state)


async def one_call(server: Server, store: Store, audio: dict[str, np.ndarray]) -> dict:
    url = f"{server.ws_url}/twilio/media"
    out: dict = {}
    async with TwilioPeer(url, caller_id="+15551230001", auth_token=TWILIO_TOKEN) as peer:
        await peer.wait_bot_done(timeout=120)
        peer.say(audio["ask"])
        row = await asyncio.to_thread(wait_for, store, "holding")
        await peer.wait_bot_speaking(after=peer.tick, timeout=60)  # hold message (or later)
        client = signed_in(server.url, "bench")
        claimed_at = time.monotonic()
        claim_tick = peer.tick
        assert client.post(f"/api/handoffs/{row['handoff_id']}/claim").status_code == 200
        agent = Softphone(server.url, client.cookies[COOKIE], row["handoff_id"])
        agent.say(audio["agent"])
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        # The agent is connected once the peer hears something other than the hold message:
        # wait for the bridge to be recorded, then for the first voiced frame after it.
        await asyncio.to_thread(wait_for, store, "answered")
        heard = await voiced_after(peer, claim_tick)
        # Skip hold audio that was still playing at the claim: the agent's word is the first
        # voiced frame after the bridge; the hold message is cut at the bridge.
        out["claim_to_agent_heard_ms"] = (heard - claimed_at) * 1000
        await peer.wait_bot_done(after=peer.tick, quiet_s=1.0, timeout=60)
        # Mouth to ear, agent -> caller: a tone burst from the agent.
        tick = peer.tick
        agent.say(tone())
        while agent.first_voiced_sent() is None:
            await asyncio.sleep(0.002)
        heard = await voiced_after(peer, tick)
        out["agent_to_caller_ms"] = (heard - agent.first_voiced_sent()) * 1000
        await asyncio.sleep(1.0)
        # Caller -> agent: a tone burst from the caller.
        before = len(agent.voiced_at)
        burst = peer.say(tone().astype(np.float32) / 32768)
        while burst.first_voiced not in peer.log.speech_wall or len(agent.voiced_at) == before:
            await asyncio.sleep(0.002)
        sent = peer.log.speech_wall[burst.first_voiced]
        out["caller_to_agent_ms"] = (agent.voiced_at[before] - sent) * 1000
        stop.set()
        await task
        client.close()
        await peer.stop()
        await peer.wait_closed(timeout=60)
    record = store.get_call(row["call_id"])
    turns = record["turns"]
    at = next(i for i, t in enumerate(turns) if t["role"] == "bot" and t["kind"] == "handoff")
    transfer = turns[at]
    asked = [t for t in turns[:at] if t["role"] == "caller" and "reply_ready" in t["timings"]]
    decided = asked[-1]["timings"]["reply_ready"]  # the turn the handoff answered
    hold = next(t for t in turns if t["role"] == "bot" and t["kind"] == "hold")
    out["decision_to_transfer_audio_ms"] = (transfer["start"] - decided) * 1000
    out["decision_to_hold_message_ms"] = (hold["start"] - decided) * 1000
    out["transfer_message_s"] = transfer["end"] - transfer["start"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/transfer.json"))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    store = Store(f"sqlite:///{tmp}/bench.db")
    add_user(store, "bench", "agent")
    writer = StoreWriter(store, spool_dir=tmp / "spool")
    bot = Bot(BotConfig(pack="bank", asr="tiny.en"), handoffs=writer)
    piper = PiperTTS()
    audio = {
        "ask": render_caller("can I just talk to a real person please", piper=piper),
        "agent": (render_caller(AGENT_SAYS, line="linear", piper=piper) * 32767).astype(np.int16),
    }
    config = ServerConfig(twilio_auth_token=TWILIO_TOKEN)
    app = create_app(
        bot,
        config=config,
        history=store,
        sinks=[writer],
        store=store,
        # No hold chime: the first voiced frame after the claim must be the agent's word.
        queue=QueueConfig(hold_every_s=10, queue_timeout_s=600, hold_audio="silence"),
    )
    server = Server(app)
    results = []
    try:
        for i in range(args.rounds):
            result = asyncio.run(one_call(server, store, audio))
            print(f"round {i + 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in result.items()))
            results.append(result)
    finally:
        server.stop()
        writer.close()
        bot.close()
        store.close()
    summary = {
        key: {
            "p50": round(statistics.median(r[key] for r in results), 1),
            "max": round(max(r[key] for r in results), 1),
        }
        for key in results[0]
    }
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "rounds": results,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
