"""Fault suite: a real ``voicebot serve`` on 127.0.0.1, probed as an outside tester would,
with the project's Twilio peer (``TwilioPeer``) as the legitimate caller. One verdict per
probe:

- **unloaded**: the legitimate call alone (its answers and voice-to-voice p95 are what the
  loaded runs are compared with);
- **flood**: the call while a few connections, each with a valid (signed) ``start`` and
  caller audio at real-time pace, send 10,000 small messages each: every answer, p95
  within 25 % of unloaded, each flooder closed (1008) with a reason, a few log lines;
- **junk**: connections with a valid ``start`` and then nothing, or audio ten times faster
  than real time (the public browser route: unsigned), arrive first: none takes a call
  slot, each is closed with a reason, the call is served;
- **idle**: 300 sockets that never speak, beside the call: all closed, the call served;
- **memory**: the server's RSS after the fuzz runs above, against before (target 20 MB);
- **db lock**: an exclusive lock on the SQLite file for 15 s mid-call: every answer, the
  record complete once the lock is gone, nothing left in the spool;
- **webhook down**: a call handed to an agent while the webhook receiver is down; it comes
  back: delivered once, signed; ``voicebot handoffs deliver --now`` run meanwhile, beside
  the server's retry loop, posts nothing twice;
- **kill -9**: the server killed while the bot is speaking, then started again: the call is
  ``interrupted``, with the time of its last write and the words heard so far.

Floods go to 127.0.0.1 only (``voicebot.server.junk_peers``), bounded in messages and time;
they run in a child process at the lowest CPU priority.

    .venv/bin/python scripts/bench_faults.py --out build/bench/faults.json
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_load import free_port, percentile  # scripts/ is on the script's path

from voicebot.handoff.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from voicebot.server import junk_peers
from voicebot.server.twilio import signature
from voicebot.server.twilio_peer import TICK_S, TwilioPeer
from voicebot.store import Store
from voicebot.tts.caller_voice import render_caller
from voicebot.tts.piper import PiperTTS

LINES = [
    "what are your branch opening hours",
    "hi I lost my card yesterday",
    "nine four one zero seven",
    "four five six seven",
    "no thanks",
]
AGENT_LINES = ["hi I lost my card", "can I just talk to a real person please"]
CALLER = "+15551230001"
P95_TOLERANCE = 0.25
RSS_LIMIT_MB = 20.0
TWILIO_TOKEN = secrets.token_hex(16)
SCRAPE_TOKEN = secrets.token_hex(16)
WEBHOOK_SECRET = secrets.token_hex(16)


class Serve:
    """``voicebot serve`` in its own folder (database, spool, logs), on a free port."""

    def __init__(self, folder: Path, webhook: str, max_calls: int) -> None:
        self.folder, self.webhook, self.max_calls = folder, webhook, max_calls
        self.port = free_port()
        self.db = f"sqlite:///{folder}/voicebot.db"
        self.log = folder / "serve.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Serve":
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("voicebot serve is already running")
        command = [
            sys.executable, "-m", "voicebot", "serve", "--port", str(self.port),
            "--max-calls", str(self.max_calls), "--public-call", "--db", self.db,
            "--webhook", self.webhook,
        ]  # fmt: skip
        env = os.environ | {
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "VOICEBOT_METRICS_TOKEN": SCRAPE_TOKEN,
            "VOICEBOT_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                command, cwd=self.folder, stdout=log, stderr=log, env=env
            )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.5)
            if self.process.poll() is not None:
                raise SystemExit(f"voicebot serve exited with {self.process.returncode}")
        raise SystemExit("voicebot serve did not come up in 300 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def media(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio/media"

    def rss_mb(self) -> float:
        assert self.process is not None
        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def active_calls(self) -> int:
        return httpx.get(f"{self.url}/healthz", timeout=5).json()["active_calls"]

    def metric(self, name: str) -> float:
        auth = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
        text = httpx.get(f"{self.url}/metrics", timeout=10, headers=auth).text
        return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(name))

    def log_lines(self, needle: str) -> int:
        return sum(needle in line for line in self.log.read_text(errors="replace").splitlines())

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


async def legit_call(serve: Serve, lines: list[np.ndarray], *, kill_after_s: float = 0) -> dict:
    """The legitimate caller: the greeting, then each line and its answer, then stop.
    ``kill_after_s``: kill -9 the server that long into the first answer instead."""
    answers, latencies = 0, []
    url = serve.media
    try:
        async with TwilioPeer(url, caller_id=CALLER, auth_token=TWILIO_TOKEN) as peer:
            await peer.wait_bot_done(quiet_s=0.8, timeout=90)
            for audio in lines:
                said = peer.say(audio)
                first = await peer.wait_bot_speaking(after=said.last_voiced + 1, timeout=90)
                latencies.append((first - said.last_voiced) * TICK_S)
                if kill_after_s:
                    await asyncio.sleep(kill_after_s)
                    serve.kill9()
                    return {"killed_after_s": kill_after_s}
                await peer.wait_bot_done(after=first, quiet_s=0.8, timeout=90)
                answers += 1
            await peer.stop()
            await peer.wait_closed()
    except (ConnectionError, TimeoutError) as exc:
        return {"answers": answers, "of": len(lines), "v2v_s": latencies, "error": str(exc)}
    return {
        "answers": answers,
        "of": len(lines),
        "v2v_s": [round(x, 3) for x in latencies],
        "p95_s": round(percentile(latencies, 95), 3),
        "close": [peer.close_code, peer.close_reason],
    }


def newest_record(serve: Serve) -> dict:
    store = Store(serve.db)
    try:
        rows = [r for r in store.list_calls(20) if r["caller_id"] == CALLER]
        return store.get_call(rows[0]["call_id"]) or {}
    finally:
        store.close()


def bot_texts(record: dict) -> list[str]:
    return [t["text"] for t in record.get("turns", []) if t["role"] == "bot"]


# --- junk, in a child process at the lowest priority ---------------------------------------


def _junk_worker(kind: str, url: str, count: int, headers: dict, out: multiprocessing.Queue):
    os.nice(19)

    async def run() -> list:
        if kind == "flood":
            jobs = [junk_peers.flood(url, audio=True, headers=headers) for _ in range(count)]
        elif kind == "junk":
            jobs = [
                junk_peers.junk_start(url, fast_audio=bool(i % 2), headers=headers)
                for i in range(count)
            ]
        else:
            jobs = [junk_peers.idle(url, headers=headers, timeout_s=20) for _ in range(count)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(run())
    out.put([r.__dict__ if isinstance(r, junk_peers.Closed) else repr(r) for r in results])


def start_junk(kind: str, url: str, count: int, headers: dict | None = None):
    out: multiprocessing.Queue = multiprocessing.Queue()
    worker = multiprocessing.Process(
        target=_junk_worker, args=(kind, url, count, headers or {}, out), daemon=True
    )
    worker.start()
    return worker, out


def closes(results: list) -> dict[str, int]:
    counted: dict[str, int] = {}
    for r in results:
        key = f"{r['code']} {r['reason']}" if isinstance(r, dict) else r
        counted[key] = counted.get(key, 0) + 1
    return counted


# --- the probes ------------------------------------------------------------------------------


def verdict(name: str, ok: bool, summary: str, data: dict) -> dict:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {summary}", flush=True)
    return {"probe": name, "ok": ok, "summary": summary, **data}


def compare(call: dict, base: dict, base_texts: list[str], texts: list[str]) -> tuple[bool, str]:
    if "p95_s" not in call or "p95_s" not in base:
        return False, f"{call.get('answers', 0)}/{call['of']} answers ({call.get('error')})"
    slower = call["p95_s"] / base["p95_s"] - 1
    call["bot_texts"] = texts  # beside the unloaded call's, so a difference can be read
    ok = call["answers"] == call["of"] and texts == base_texts and slower <= P95_TOLERANCE
    return ok, (
        f"{call['answers']}/{call['of']} answers{'' if texts == base_texts else ' (DIFFERENT)'}, "
        f"p95 {call['p95_s']:.2f} s vs {base['p95_s']:.2f} s unloaded ({slower:+.0%})"
    )


def probe_flood(serve: Serve, lines, base, base_texts, flooders: int) -> dict:
    headers = {"X-Twilio-Signature": signature(TWILIO_TOKEN, serve.media, [])}
    unknown_before = serve.metric('voicebot_peer_errors_total{kind="twilio_unknown_event"}')
    logged_before = serve.log_lines("unknown Twilio event")
    worker, out = start_junk("flood", serve.media, flooders, headers)
    time.sleep(1.0)  # the flood is under way when the caller dials
    call = asyncio.run(legit_call(serve, lines))
    results = out.get(timeout=120)
    worker.join(timeout=30)
    ok, summary = compare(call, base, base_texts, bot_texts(newest_record(serve)))
    unknown = serve.metric('voicebot_peer_errors_total{kind="twilio_unknown_event"}')
    logged = serve.log_lines("unknown Twilio event") - logged_before
    rate_closed = sum(
        isinstance(r, dict) and r["code"] == 1008 and "messages a second" in r["reason"]
        for r in results
    )
    ok = ok and rate_closed == flooders and logged <= 3
    summary += (
        f"; {rate_closed}/{flooders} flooders closed 1008 (rate); "
        f"{unknown - unknown_before:.0f} unknown events read, {logged} log line(s)"
    )
    return verdict("flood", ok, summary, {"call": call, "flooders": closes(results)})


def probe_junk(serve: Serve, lines, base, base_texts, count: int) -> dict:
    url = f"ws://127.0.0.1:{serve.port}/ws/call"
    deadline = time.monotonic() + 60
    while serve.active_calls() and time.monotonic() < deadline:  # the last probe's calls
        time.sleep(0.5)
    worker, out = start_junk("junk", url, count)
    peak = 0
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # the junk has said "start": does it hold slots?
        peak = max(peak, serve.active_calls())
        time.sleep(0.1)
    call = asyncio.run(legit_call(serve, lines))
    results = out.get(timeout=120)
    worker.join(timeout=30)
    ok, summary = compare(call, base, base_texts, bot_texts(newest_record(serve)))
    refused = sum(isinstance(r, dict) and r["code"] in (1008, 1013) for r in results)
    ok = ok and peak == 0 and refused == count
    summary += f"; junk held {peak} call slots at most; {refused}/{count} closed with a reason"
    return verdict("junk", ok, summary, {"call": call, "junk": closes(results)})


def probe_idle(serve: Serve, lines, base, base_texts, count: int) -> dict:
    headers = {"X-Twilio-Signature": signature(TWILIO_TOKEN, serve.media, [])}
    worker, out = start_junk("idle", serve.media, count, headers)  # accepted, then silent
    time.sleep(2.0)
    call = asyncio.run(legit_call(serve, lines))
    results = out.get(timeout=120)
    worker.join(timeout=30)
    ok, summary = compare(call, base, base_texts, bot_texts(newest_record(serve)))
    closed = sum(isinstance(r, dict) and r["code"] is not None for r in results)
    ok = ok and closed == count
    summary += f"; {closed}/{count} idle sockets closed by the server"
    return verdict("idle", ok, summary, {"call": call, "idle": closes(results)})


def probe_db_lock(serve: Serve, lines, base, base_texts) -> dict:
    path = serve.db.removeprefix("sqlite:///")

    def hold() -> None:
        conn = sqlite3.connect(path, timeout=30)
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(15)
        conn.rollback()
        conn.close()

    locker = threading.Timer(8.0, hold)  # once the greeting is stored: mid-call
    locker.start()
    call = asyncio.run(legit_call(serve, lines))
    locker.join()
    deadline = time.monotonic() + 30
    record: dict = {}
    while time.monotonic() < deadline:  # the spool is flushed a few seconds after
        record = newest_record(serve)
        spooled = list((serve.folder / "var" / "spool").glob("*.json"))
        if record.get("ended_by") and not spooled:
            break
        time.sleep(1)
    ok, summary = compare(call, base, base_texts, bot_texts(record))
    ok = ok and record.get("ended_by") == "caller" and not spooled
    summary += f"; stored: ended_by={record.get('ended_by')}, {len(spooled)} file(s) in the spool"
    return verdict("db lock 15 s", ok, summary, {"call": call})


class Receiver(ThreadingHTTPServer):
    """The webhook receiver: keeps each delivery (its body and whether it is signed)."""

    def __init__(self, port: int) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(
                    body,
                    WEBHOOK_SECRET,
                    self.headers[TIMESTAMP_HEADER],
                    self.headers[SIGNATURE_HEADER],
                )
                received.append((json.loads(body)["handoff_id"], ok))
                time.sleep(0.2)  # a slow receiver: a second deliverer would overlap
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def probe_webhook(serve: Serve, agent_lines, hook_port: int) -> dict:
    call = asyncio.run(legit_call(serve, agent_lines))
    record = newest_record(serve)
    handoff = (record.get("handoff") or {}).get("handoff_id")
    time.sleep(6.0)  # a few failed attempts while nobody listens
    store = Store(serve.db)
    try:
        attempts_down = sum(d["attempts"] for d in store.deliveries(handoff)) if handoff else 0
        receiver = Receiver(hook_port)
        env = os.environ | {"VOICEBOT_WEBHOOK_SECRET": WEBHOOK_SECRET}
        now = subprocess.run(
            [sys.executable, "-m", "voicebot", "handoffs", "deliver", "--now", "--db", serve.db],
            capture_output=True,
            text=True,
            env=env,
            cwd=serve.folder,
            timeout=120,
        )
        time.sleep(10.0)  # the server's own retry comes due meanwhile
        receiver.shutdown()
        deliveries = store.deliveries(handoff) if handoff else []
    finally:
        store.close()
    got = [ok for hid, ok in receiver.received if hid == handoff]
    ok = bool(handoff) and attempts_down >= 1 and got == [True] and now.returncode == 0
    ok = ok and all(d["delivered_at"] for d in deliveries)
    summary = (
        f"handoff {handoff}: {attempts_down} failed attempt(s) while down; then received "
        f"{len(got)} time(s), signed: {all(got) if got else '-'} (deliver --now beside the "
        f"server's loop: {now.stderr.strip().splitlines()[-1] if now.stderr else now.returncode})"
    )
    return verdict("webhook down", ok, summary, {"call": call})


def probe_kill(serve: Serve, lines) -> dict:
    call = asyncio.run(legit_call(serve, lines, kill_after_s=2.5))
    if "killed_after_s" not in call:  # the call failed before the answer it was to cut
        return verdict("kill -9 mid-utterance", False, f"no answer to cut: {call}", {})
    killed_at = time.time()
    serve.start()  # start-up marks what the dead process left live
    record = newest_record(serve)
    last = record["turns"][-1] if record.get("turns") else {}
    heard = last.get("text", "")
    planned = last.get("planned_text") or ""
    ok = (
        record.get("ended_by") == "interrupted"
        and bool(record.get("interrupted_at"))
        and last.get("role") == "bot"
        and last.get("interrupted") is True
        and bool(heard)
        and planned.startswith(heard.rstrip(".,"))
    )
    stamp = record.get("interrupted_at", "")
    last_write = datetime.fromisoformat(stamp).timestamp() if stamp else 0.0
    summary = (
        f"ended_by={record.get('ended_by')}, last write {killed_at - last_write:.1f} s before "
        f"the kill; last turn heard {heard!r} of {planned[:60]!r}..."
    )
    return verdict("kill -9 mid-utterance", ok, summary, {"record_turns": len(record["turns"])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/faults.json"))
    parser.add_argument("--flooders", type=int, default=3)
    parser.add_argument("--junk", type=int, default=6, help="junk connections (browser route)")
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--fuzz-runs", type=int, default=2, help="flood+junk+idle rounds")
    parser.add_argument(
        "--lines", type=int, default=len(LINES), help="caller lines per call (a brief run: 2)"
    )
    args = parser.parse_args()

    tts = PiperTTS(deterministic=True)
    lines = [
        render_caller(text, voice="piper-low", line="mulaw", piper=tts)
        for text in LINES[: args.lines]
    ]
    agent = [
        render_caller(text, voice="piper-low", line="mulaw", piper=tts) for text in AGENT_LINES
    ]
    hook_port = free_port()
    serve = Serve(
        Path(tempfile.mkdtemp(prefix="bench-faults-")), f"http://127.0.0.1:{hook_port}/h", 4
    )
    serve.start()
    results = []
    try:
        base = asyncio.run(legit_call(serve, lines))
        base_texts = bot_texts(newest_record(serve))
        results.append(
            verdict(
                "unloaded",
                base.get("answers") == len(lines),
                f"{base.get('answers')}/{len(lines)} answers, p95 {base.get('p95_s')} s",
                {"call": base, "bot_texts": base_texts},
            )
        )
        time.sleep(10.0)  # as after each run: the server reclaims what a call left, then we read
        rss_before = serve.rss_mb()
        rss_runs = []  # after each run: a one-off rise is warm-up, a rise per run is a leak
        for _ in range(args.fuzz_runs):
            results.append(probe_flood(serve, lines, base, base_texts, args.flooders))
            results.append(probe_junk(serve, lines, base, base_texts, args.junk))
            results.append(probe_idle(serve, lines, base, base_texts, args.idle))
            time.sleep(10.0)
            rss_runs.append(round(serve.rss_mb(), 1))
        rss_after = rss_runs[-1]
        grew = rss_after - rss_before
        results.append(
            verdict(
                "memory",
                grew <= RSS_LIMIT_MB,
                f"RSS {rss_before:.0f} MB before {args.fuzz_runs} fuzz runs, {rss_after:.0f} MB "
                f"after ({grew:+.1f} MB; limit {RSS_LIMIT_MB:g})",
                {"rss_before_mb": round(rss_before, 1), "rss_after_runs_mb": rss_runs},
            )
        )
        results.append(probe_db_lock(serve, lines, base, base_texts))
        results.append(probe_webhook(serve, agent, hook_port))
        results.append(probe_kill(serve, lines))
    finally:
        serve.stop()
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
        "passed": sum(r["ok"] for r in results),
        "probes": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{report['passed']}/{len(results)} probes passed  (wrote {args.out})")


if __name__ == "__main__":
    main()
