"""OpenTelemetry traces when OTEL_EXPORTER_OTLP_ENDPOINT turns them on; nothing when not.

Every layer opens its spans and reads the current trace through this module. Off (the
default) it imports nothing of OpenTelemetry: `span` hands back one shared object that
does nothing, `traceparent` and `current_context` answer None, and the pool's connections,
the payment gateway and the ASGI app are not wrapped (their owners ask `enabled` once, at
start). On, `observability/otel.py` holds the SDK, imported by `start`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType, TracebackType
from typing import Any, Protocol


class SpanHandle(Protocol):
    """A span in a ``with`` block; attributes with the value None are left out."""

    @property
    def recording(self) -> bool: ...

    def set(self, attributes: Mapping[str, Any]) -> None: ...

    def __enter__(self) -> SpanHandle: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _NoSpan:
    """What `span` gives with tracing off: one object for every call, doing nothing."""

    __slots__ = ()
    recording = False

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def set(self, attributes: Mapping[str, Any]) -> None:
        return None


NO_SPAN: SpanHandle = _NoSpan()

# observability.otel while tracing is on; None (and the package not imported) while off.
_sdk: ModuleType | None = None


def enabled() -> bool:
    return _sdk is not None


def start(*, exporter: Any = None, synchronous: bool = False, version: str = "") -> None:
    """Turn tracing on for this process: the SDK's provider with the OTLP/HTTP exporter
    (its OTEL_* variables) behind the batch processor, or ``exporter`` (tests: the SDK's
    in-memory one, ``synchronous`` to export each span as it ends)."""
    global _sdk
    from h2s_checkout.observability import otel

    otel.start(exporter=exporter, synchronous=synchronous, version=version)
    _sdk = otel


def shutdown() -> None:
    """Export what the batch processor still holds, then turn tracing off."""
    global _sdk
    if _sdk is not None:
        _sdk.shutdown()
        _sdk = None


def span(
    name: str,
    *,
    kind: str = "internal",
    attributes: Mapping[str, Any] | None = None,
    parent: Any = None,
    links: Sequence[Any] = (),
) -> SpanHandle:
    """A span made current for a ``with`` block, a child of the current one, or of
    ``parent`` (a W3C traceparent string, or a `current_context`); ``links``: contexts or
    traceparents it is linked to. ``kind``: internal, server, client, producer, consumer."""
    if _sdk is None:
        return NO_SPAN
    handle: SpanHandle = _sdk.Span(name, kind, attributes, parent, links)
    return handle


def traceparent() -> str | None:
    """The current span's W3C traceparent if it is sampled; None otherwise, and when off."""
    if _sdk is None:
        return None
    value: str | None = _sdk.traceparent()
    return value


def current_context() -> Any:
    """The current OpenTelemetry context, to carry into another task; None when off."""
    if _sdk is None:
        return None
    return _sdk.current_context()


def log_processor() -> Any:
    """The structlog processor putting trace_id and span_id on each line; None when off."""
    return None if _sdk is None else _sdk.add_trace_ids
