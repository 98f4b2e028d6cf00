"""Per request: a fresh log context, one canonical log line, HTTP metrics, no-store on /api,
and a NUL in the path, query or headers refused (api/request_screen.py)."""

from __future__ import annotations

import random
import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from h2s_checkout.api.request_screen import send_refusal, target_refusal
from h2s_checkout.observability.logging import bind_log_fields, clear_request_context, get_logger
from h2s_checkout.observability.metrics import HTTP_IN_PROGRESS, HTTP_REQUESTS, HTTP_SECONDS
from h2s_checkout.store.pool import database_budget

log = get_logger("h2s_checkout.request")

_NO_STORE = (b"cache-control", b"no-store")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Paths no route matched are counted under one label, so a scan cannot grow the metrics.
_UNMATCHED = "<unmatched>"


class _Series:
    """The labelled children of the HTTP metrics, looked up once per label set."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._in_progress: dict[str, Any] = {}

    def in_progress(self, method: str) -> Any:
        gauge = self._in_progress.get(method)
        if gauge is None:
            gauge = self._in_progress[method] = HTTP_IN_PROGRESS.labels(method)
        return gauge

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        key = (method, path, status)
        pair = self._children.get(key)
        if pair is None:
            labels = (method, path, str(status))
            pair = self._children[key] = (
                HTTP_REQUESTS.labels(*labels),
                HTTP_SECONDS.labels(*labels),
            )
        pair[0].inc()
        pair[1].observe(seconds)


class RequestContextMiddleware:
    """Plain ASGI around the whole app, so that it also covers answers made by exception
    handlers and before any route runs (404, 405)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._series = _Series()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]  # type: ignore[typeddict-item]  # http only here
        clear_request_context()
        # Unique, not secret: the Mersenne Twister (reseeded in each forked worker) needs no
        # system call, where secrets.token_hex asked the kernel for randomness per request.
        request_id = f"{random.getrandbits(64):016x}"
        bind_log_fields(request_id=request_id)
        request_id_header = (b"x-request-id", request_id.encode())
        started = time.perf_counter()
        status = 500
        no_store = path.startswith(("/api", "/debug", "/checkout"))

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers: list[Any] = list(message.get("headers") or ())
                if no_store:
                    headers = [h for h in headers if h[0].lower() != b"cache-control"]
                    headers.append(_NO_STORE)
                headers.append(request_id_header)
                message["headers"] = headers
            await send(message)

        refusal = target_refusal(scope)
        if path in _QUIET_PATHS and refusal is None:
            # Probes and scrapes: neither logged nor counted, as before.
            try:
                await self.app(scope, receive, send_with_headers)
            finally:
                clear_request_context()
            return
        in_progress = self._series.in_progress(method)
        in_progress.inc()
        try:
            # One bound (H2S_DB_TIMEOUT_S) for all of a request's database work, so a silent
            # database answers 503 well before storefronts and balancers give up (30 s).
            if refusal is not None:
                await send_refusal(send_with_headers, refusal)
            else:
                with database_budget():
                    await self.app(scope, receive, send_with_headers)
        finally:
            in_progress.dec()
            elapsed = time.perf_counter() - started
            template = scope.get("path_template") or _UNMATCHED
            self._series.observe(method, template, status, elapsed)
            log.info(
                "request",
                method=method,
                path=path,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            clear_request_context()
