"""Runs the emulator on its own event loop in a background thread, for tests in-process."""

import asyncio
import threading
from pathlib import Path

from .app import EmulatorApp
from .httpserver import HTTPServer
from .state import EmulatorState
from .webhooks import RetryPolicy


class EmulatorServer:
    """A Stripe emulator listening on host:port (0 picks a free port).

    `latency_ms=None` takes the global latency from H2S_EMULATOR_LATENCY_MS
    (default 0). `public_base_url` prefixes the sessions' hosted-page `url`;
    by default the server's own base URL. Events go to `webhook_url` (none:
    only logged), signed with `webhook_secret`, retried per `webhook_retry`;
    the expiry sweeper runs every `sweep_interval_s`. With `state_path` the
    state lives in that SQLite file too and a later server on it resumes it.
    `admin_token` opens its admin API (`/_emulator/*`); none given, one is made
    (`self.admin_token`).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float | None = None,
        public_base_url: str | None = None,
        seed: int | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_retry: RetryPolicy | None = None,
        sweep_interval_s: float = 1.0,
        state_path: str | Path | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.state = EmulatorState(
            latency_ms=latency_ms,
            seed=seed,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            webhook_retry=webhook_retry,
            sweep_interval_s=sweep_interval_s,
            state_path=state_path,
        )
        self.app = EmulatorApp(self.state, admin_token)
        self.admin_token = self.app.admin_token
        self._public_base_url = public_base_url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: HTTPServer | None = None
        self.base_url = ""

    def start(self) -> str:
        """Start serving in a daemon thread; returns the base URL once listening."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._http = HTTPServer(self.app, self.host, self.port)

        def run() -> None:
            assert self._loop is not None
            assert self._http is not None
            asyncio.set_event_loop(self._loop)
            try:
                _, self.port = self._loop.run_until_complete(self._http.start())
                self._loop.run_until_complete(self.state.start())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                self._loop.run_until_complete(self.state.stop())
                self.state.close()
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._http.close())
            self._loop.run_until_complete(self.state.stop())
            self._loop.close()
            self.state.close()

        self._thread = threading.Thread(target=run, name="stripe-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        self.base_url = f"http://{self.host}:{self.port}"
        self.state.public_base_url = self._public_base_url or self.base_url
        return self.base_url

    def stop(self) -> None:
        """Close every connection (hung ones too) and join the thread."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> "EmulatorServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
