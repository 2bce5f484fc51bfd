"""Servers the tests start: always on 127.0.0.1, always stopped by the test that started them."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import uvicorn
from fastapi import FastAPI


class Server:
    """uvicorn in a thread on a free port of 127.0.0.1; ``stop()`` shuts it down."""

    def __init__(self, app: FastAPI, **options: object) -> None:
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
