"""With tracing on, the HTTP server span of each request, around everything else.

Outside the request middleware and the checkout fast path, so that both doors of
POST /api/checkout, answers made before routing, and the request's canonical log line are
inside it. An incoming W3C ``traceparent`` (a storefront's trace) is its parent. Named by
the semantic conventions: ``{method} {route}`` once a route matched, else ``{method}``;
a 5xx answer is an error. Probes and scrapes are not traced. Imported only with tracing on.
"""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from h2s_checkout.observability import otel

_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})
_PROPAGATED = frozenset({b"traceparent", b"tracestate"})


class ServerSpans:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNTRACED:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]  # type: ignore[typeddict-item]  # http only here
        carrier: dict[str, str] = {}
        user_agent: str | None = None
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered in _PROPAGATED:
                carrier[lowered.decode("latin-1")] = value.decode("latin-1")
            elif lowered == b"user-agent":
                user_agent = value.decode("latin-1")
        client = scope.get("client")
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version"),
            "client.address": client[0] if client else None,
            "user_agent.original": user_agent,
        }
        with otel.Span(method, "server", attributes, carrier or None, ()) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = scope.get("path_template")
                if route:
                    span.rename(f"{method} {route}")
                span.set({"http.route": route, "http.response.status_code": status})
                if status >= 500:
                    span.fail(str(status))
