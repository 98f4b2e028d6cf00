"""The OpenTelemetry SDK behind `observability/tracing.py`: imported only once tracing is on.

The provider is this module's own, not the global one: the service's spans are all made
through `tracing.span`, and tests start and stop tracing around each test with the SDK's
in-memory exporter. The sampler is the SDK's from OTEL_TRACES_SAMPLER and
OTEL_TRACES_SAMPLER_ARG (default: parent-based, always on), the exporter OTLP over HTTP
from OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) behind the batch processor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

DEFAULT_SERVICE_NAME = "h2s-checkout"
_KINDS = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}
_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()


def start(*, exporter: Any = None, synchronous: bool = False, version: str = "") -> None:
    global _provider, _tracer
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    resource = Resource.create(
        {
            SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
            SERVICE_VERSION: version,
        }
    )
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    processor: SpanProcessor = (
        SimpleSpanProcessor(exporter) if synchronous else BatchSpanProcessor(exporter)
    )
    provider.add_span_processor(processor)
    _provider = provider
    _tracer = provider.get_tracer("h2s_checkout", version)


def shutdown() -> None:
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider = None
    _tracer = trace.NoOpTracer()


def _context_of(parent: Any) -> otel_context.Context | None:
    if parent is None or isinstance(parent, otel_context.Context):  # a Context is a Mapping
        return parent
    if isinstance(parent, str):
        return _propagator.extract({"traceparent": parent})
    if isinstance(parent, Mapping):
        return _propagator.extract(parent)
    raise TypeError(f"not a parent of a span: {type(parent).__name__}")


def _link(target: Any) -> Link | None:
    context = _context_of(target)
    span_context = trace.get_current_span(context).get_span_context() if context else None
    return Link(span_context) if span_context is not None and span_context.is_valid else None


class Span:
    """`tracing.SpanHandle` over an SDK span, current for its block."""

    __slots__ = ("_attributes", "_kind", "_links", "_name", "_parent", "_span", "_token")

    def __init__(
        self,
        name: str,
        kind: str,
        attributes: Mapping[str, Any] | None,
        parent: Any,
        links: Sequence[Any],
    ) -> None:
        self._name = name
        self._kind = _KINDS[kind]
        self._attributes = attributes
        self._parent = parent
        self._links = links
        self._span: trace.Span = trace.INVALID_SPAN
        self._token: object = None

    def __enter__(self) -> Span:
        links = [link for link in map(_link, self._links) if link is not None]
        self._span = _tracer.start_span(
            self._name,
            context=_context_of(self._parent),
            kind=self._kind,
            attributes=_present(self._attributes) if self._attributes else None,
            links=links,
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        if exc is not None and span.is_recording():
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        otel_context.detach(self._token)  # type: ignore[arg-type]
        span.end()

    @property
    def recording(self) -> bool:
        return self._span.is_recording()

    def set(self, attributes: Mapping[str, Any]) -> None:
        if self._span.is_recording():
            self._span.set_attributes(_present(attributes))

    def rename(self, name: str) -> None:
        self._span.update_name(name)

    def fail(self, description: str) -> None:
        """An error that raised nothing here (a 5xx answer)."""
        self._span.set_status(Status(StatusCode.ERROR, description))


def _present(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


def traceparent() -> str | None:
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid or not span_context.trace_flags.sampled:
        return None
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def current_context() -> otel_context.Context:
    return otel_context.get_current()


def add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the current span's trace and span ids on every log line."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", f"{span_context.trace_id:032x}")
        event_dict.setdefault("span_id", f"{span_context.span_id:016x}")
    return event_dict
