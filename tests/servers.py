"""Servers the tests start: always on 127.0.0.1, always stopped by the test that started them;
a phone caller to call them, and ``wait_for`` to see what they do in the background."""

import asyncio
import multiprocessing
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI

from voicebot.server.twilio_peer import TwilioPeer


def wait_for(condition: Callable[[], object], timeout: float = 120.0) -> bool:
    """Poll until ``condition()`` holds; False after ``timeout`` (a hang guard, not a bound)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


class Server:
    """uvicorn in a thread on a free port of 127.0.0.1; ``stop()`` shuts it down."""

    def __init__(self, app: FastAPI, **options: object) -> None:
        # A page still open at the end (a live stream) is cut after 1 s, not waited on.
        options.setdefault("timeout_graceful_shutdown", 1)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60  # hang guard: a busy machine starts slowly
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers from a script of behaviours."""

    def __init__(self, script, port=0):
        self.script, self.received = list(script), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                action = receiver.script.pop(0) if receiver.script else 200
                if action == "slow":
                    time.sleep(1.5)
                    action = 200
                receiver.received.append((dict(self.headers), body, action))
                self.send_response(action)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


ROOT = Path(__file__).parent.parent
HAPROXY = "/usr/sbin/haproxy"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A program the test runs, its output in ``log``; ``stop()`` ends it (SIGTERM, then
    SIGKILL), ``kill()`` kills it at once (a crash)."""

    def __init__(self, command: list[str], folder: Path, env: dict[str, str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "output.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=folder, env=os.environ | env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Worker(Process):
    """A real ``voicebot serve`` on 127.0.0.1 (models and all), in its own folder."""

    def __init__(self, folder: Path, *options: str, env: dict[str, str] | None = None) -> None:
        self.name = folder.name  # the tests name each worker's folder as its balancer does
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "voicebot", "serve", "--port", str(self.port), *options]
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        super().__init__(command, folder, {"PYTHONPATH": path, **(env or {})})

    def wait_ready(self, timeout: float = 600.0) -> None:
        """Until ``/readyz`` answers 200 (loading the models takes a while)."""
        deadline = time.monotonic() + timeout  # hang guard
        while True:
            assert self.process.poll() is None, f"worker exited:\n{self.output()}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"worker not ready:\n{self.output()}"
            time.sleep(0.5)


class Balancer(Process):
    """Debian's HAProxy running ``deploy/haproxy.cfg`` in front of two workers."""

    def __init__(self, folder: Path, workers: list[Worker]) -> None:
        assert Path(HAPROXY).exists(), f"{HAPROXY} is missing: run scripts/provision.sh"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        env = {"VOICEBOT_LISTEN": f"127.0.0.1:{self.port}"}
        env |= {f"VOICEBOT_WORKER{i + 1}": f"127.0.0.1:{w.port}" for i, w in enumerate(workers)}
        super().__init__([HAPROXY, "-db", "-f", str(ROOT / "deploy" / "haproxy.cfg")], folder, env)

    def wait_up(self, servers: set[str], timeout: float = 120.0) -> None:
        """Until requests through the balancer have reached every one of ``servers``."""
        seen: set[str] = set()
        deadline = time.monotonic() + timeout  # hang guard
        while seen != servers:
            assert self.process.poll() is None, f"haproxy exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"only {seen} came up:\n{self.output()}"
            try:
                answer = httpx.get(f"{self.url}/readyz", timeout=5, headers={"Connection": "close"})
                if answer.status_code == 200:
                    seen.add(answer.headers["X-Voicebot-Worker"])
            except httpx.HTTPError:
                pass
            time.sleep(0.2)


class PhoneCall:
    """A Twilio caller (the faithful peer) in a process of its own, so that it keeps real time
    however busy the test's process is (a caller that stalls 5 s is a dead line to the
    server): after the greeting it says ``first``, sets ``heard_first`` once the bot has
    answered, and says ``second`` when ``go_on()`` is called (the test has looked at the
    call meanwhile); ``join()`` gives the close reason."""

    def __init__(self, url: str, first: np.ndarray, second: np.ndarray, *, auth_token: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.heard_first = context.Event()
        self._go = context.Event()
        self._closed = context.Queue()
        events = (self.heard_first, self._go, self._closed)
        self.process = context.Process(
            target=_phone_call, args=(url, first, second, auth_token, *events), daemon=True
        )
        self.process.start()

    def go_on(self) -> None:
        self._go.set()

    def join(self, timeout: float = 90.0) -> list[str]:
        """The close reason (empty if the caller failed: its error is in the output)."""
        try:
            closed = [self._closed.get(timeout=timeout)]
        except queue.Empty:
            closed = []
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
        return closed


def _phone_call(url, first, second, token, heard_first, go, closed) -> None:
    """``PhoneCall``'s process."""

    async def call() -> None:
        async with TwilioPeer(url, caller_id="+15551230001", auth_token=token) as peer:
            await peer.wait_bot_done()  # the greeting
            said = peer.say(first)
            await peer.wait_bot_done(after=said.last_voiced)
            heard_first.set()
            await asyncio.to_thread(go.wait, 120)
            peer.say(second)
            await peer.wait_closed(timeout=60)  # e.g. after the transfer message
            closed.put(peer.close_reason)

    asyncio.run(call())
