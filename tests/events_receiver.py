"""A subscriber on 127.0.0.1 for the outbound-event tests, served from a thread.

It answers a script: each entry is an HTTP status, ("sleep", seconds) to hold the
request past the sender's timeout, or a threading.Event to hold it until the test sets
it (then 200); after the script, 200. It verifies nothing itself:
tests verify what it recorded with the standardwebhooks package, as a receiver would.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops concurrent connects (retried after 1 s)


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    answered: int | None  # None: held past the sender's timeout

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> dict[str, Any]:
        """The event, verified with the standardwebhooks package (raises if it fails)."""
        return Webhook(secret).verify(self.body, self.headers)


class EventReceiver:
    def __init__(self, script: list[Any] | None = None, path: str = "/h2s") -> None:
        self.script = list(script or [])
        self.received: list[Delivery] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._cond:
                    step = receiver.script.pop(0) if receiver.script else 200
                    held = isinstance(step, (tuple, threading.Event))
                    receiver.received.append(Delivery(headers, body, None if held else step))
                    receiver._cond.notify_all()
                if isinstance(step, threading.Event):
                    step.wait(timeout=30)
                    step = 200
                elif held:
                    time.sleep(step[1])
                    step = 200
                answer = b'{"received": true}'
                try:
                    self.send_response(step)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> EventReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, count: int, timeout: float = 20.0) -> list[Delivery]:
        """The first ``count`` requests, waiting for them; fails after ``timeout`` seconds."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.received) >= count, timeout)
            assert ok, f"expected {count} event requests, got {len(self.received)}"
            return list(self.received[:count])

    def snapshot(self) -> list[Delivery]:
        with self._cond:
            return list(self.received)

    async def until(self, count: int, timeout: float = 20.0) -> list[Delivery]:
        """``wait`` for a test whose sender runs on the test's own event loop."""
        import asyncio

        deadline = time.monotonic() + timeout
        while len(self.snapshot()) < count:
            assert time.monotonic() < deadline, (
                f"expected {count} event requests, got {len(self.snapshot())}"
            )
            await asyncio.sleep(0.02)
        return self.snapshot()[:count]
