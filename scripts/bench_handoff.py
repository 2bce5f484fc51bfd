"""Benchmark: from the caller's last word to the handoff card visible in the agent desktop.

Runs real-time paced simulated calls (real VAD, Whisper, classifier, policy, store, Piper)
that end in a handoff, with the agent desktop open in headless Chromium on a real uvicorn
server. The page stamps (browser clock) when each card is inserted; the caller's last word
is the end of their final turn in call time plus the wall time the call started. Both clocks
are this machine's, so the difference is what an agent would see.

    .venv/bin/python scripts/bench_handoff.py --out build/bench/handoff.json
"""

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browsers import launch
from tests.servers import Server
from tests.signin import add_user, sign_in_page
from voicebot.pipeline.bot import Bot, BotConfig
from voicebot.server import create_app
from voicebot.store import Store, StoreWriter
from voicebot.transports.simulated import CallerSegment, SimulatedCaller
from voicebot.tts.caller_voice import render_caller
from voicebot.tts.piper import PiperTTS

CALLS = {
    "caller_request": ["hi I lost my card", "can I just talk to a real person please"],
    "negative_sentiment": ["I was charged twice", "this is ridiculous, you people are useless"],
    "low_confidence": ["what's the weather like in paris", "do you sell pizza"],
}

# Records, in the page, when each card is first inserted (browser clock, epoch ms).
STAMP_CARDS = """
window.cardSeen = {};
new MutationObserver(() => {
  for (const a of document.querySelectorAll('article[data-id]'))
    if (!(a.dataset.id in window.cardSeen)) window.cardSeen[a.dataset.id] = Date.now();
}).observe(document.getElementById('queue'), {childList: true, subtree: true});
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/handoff.json"))
    parser.add_argument("--rounds", type=int, default=2, help="times each call is run")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp())
    store = Store(f"sqlite:///{tmp}/bench.db")
    writer = StoreWriter(store, spool_dir=tmp / "spool")
    add_user(store, "ana", "agent")
    bot = Bot(BotConfig(pack="bank", asr="tiny.en"), handoffs=writer)
    server = Server(create_app(bot, store=store))  # the desk as `voicebot serve` mounts it
    voice = PiperTTS(deterministic=True)
    results = []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        sign_in_page(page, server.url, "ana")
        page.wait_for_selector("#conn.live")
        page.evaluate(STAMP_CARDS)
        for _ in range(args.rounds):
            for expected, lines in CALLS.items():
                segments = [CallerSegment(render_caller(line, piper=voice)) for line in lines]
                caller = SimulatedCaller(segments, realtime=True)
                box: dict = {}

                def run(caller=caller, box=box) -> None:
                    box["t0"] = time.time()
                    box["record"] = asyncio.run(
                        bot.run_call(
                            caller, realtime=True, sinks=[writer], caller_id="+15551230001"
                        )
                    )

                thread = threading.Thread(target=run)
                thread.start()
                thread.join()
                record = box["record"]
                handoff_id = record.handoff["handoff_id"]
                page.wait_for_function(f"window.cardSeen[{json.dumps(handoff_id)}]")
                seen_ms = page.evaluate(f"window.cardSeen[{json.dumps(handoff_id)}]")
                last_word = max(t.end for t in record.turns if t.role == "caller" and t.end)
                latency = seen_ms / 1000 - (box["t0"] + last_word)
                results.append(
                    {"reason": record.handoff_reason, "expected": expected, "ms": latency * 1000}
                )
                print(f"{record.handoff_reason:20} last word -> card {latency * 1000:6.0f} ms")
        browser.close()
    server.stop()
    writer.close()
    bot.close()
    values = sorted(r["ms"] for r in results)
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs",
        "calls": results,
        "p50_ms": statistics.median(values),
        "max_ms": values[-1],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"p50 {summary['p50_ms']:.0f} ms, max {summary['max_ms']:.0f} ms -> {args.out}")


if __name__ == "__main__":
    main()
