"""OpenTelemetry traces, with the SDK's in-memory exporter: the spans a checkout makes
through either door, their parents across the fast path, the flow, SQL and Stripe, and
the trace ids the timeline and the outbound events carry."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from events_receiver import EventReceiver
from h2s_checkout.cli import trace
from h2s_checkout.observability import log_lines, tracing
from support import app_client, checkout_body, in_chunks, signed, stripe_event

STOREFRONT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
STOREFRONT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{STOREFRONT_TRACE}-{STOREFRONT_SPAN}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.start(exporter=exporter, synchronous=True)
    try:
        yield exporter
    finally:
        tracing.shutdown()


@pytest.fixture
async def traced(spans, settings, db, stripe, clock) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app made with tracing on (before the app, its pool and gateway)."""
    async with app_client(settings.with_overrides(trace_url_template=None), clock) as client:
        yield client


def hex_id(value: int, width: int) -> str:
    return f"{value:0{width}x}"


class Tree:
    """The finished spans of one trace, by name, with their parents."""

    def __init__(self, finished: tuple[ReadableSpan, ...], trace_id: str) -> None:
        self.spans = [s for s in finished if hex_id(s.context.trace_id, 32) == trace_id]
        self.by_id = {s.context.span_id: s for s in self.spans}

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        [found] = self.named(name)
        return found

    def parent_name(self, span: ReadableSpan) -> str | None:
        parent = self.by_id.get(span.parent.span_id) if span.parent else None
        return parent.name if parent is not None else None

    def edges(self) -> set[tuple[str, str | None]]:
        return {(s.name, self.parent_name(s)) for s in self.spans}


def trace_of(answer: httpx.Response, finished) -> Tree:
    server = [s for s in finished if s.kind == SpanKind.SERVER]
    assert server, "no server span"
    return Tree(finished, hex_id(server[-1].context.trace_id, 32))


async def timeline(client, trace_id: str, admin) -> dict:
    answer = await client.get(f"/api/checkouts/{trace_id}/timeline", headers=admin)
    assert answer.status_code == 200, answer.text
    return answer.json()


NEW_CHECKOUT_EDGES = {
    ("POST /api/checkout", None),
    ("checkout claim_and_queue", "POST /api/checkout"),
    ("h2s_begin_checkout", "checkout claim_and_queue"),
    ("checkout create_session", "POST /api/checkout"),
    ("stripe create_session", "checkout create_session"),
    ("checkout link_session", "POST /api/checkout"),
    ("h2s_link_session", "checkout link_session"),
}


async def test_a_new_checkout_continues_the_storefronts_trace(traced, spans, admin, capsys):
    answer = await traced.post(
        "/api/checkout", json=checkout_body(), headers={"traceparent": TRACEPARENT}
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    tree = Tree(spans.get_finished_spans(), STOREFRONT_TRACE)

    assert tree.edges() >= NEW_CHECKOUT_EDGES
    server = tree.one("POST /api/checkout")
    assert hex_id(server.parent.span_id, 16) == STOREFRONT_SPAN  # the storefront's span
    assert server.parent.is_remote
    assert server.attributes["http.route"] == "/api/checkout"
    assert server.attributes["http.response.status_code"] == 201
    claim = tree.one("checkout claim_and_queue")
    assert claim.attributes["h2s.checkout_trace_id"] == body["checkout_trace_id"]
    assert claim.attributes["h2s.order_id"] == body["order_id"]
    assert claim.attributes["h2s.checkout.state"] == "job_queued"
    assert tree.one("checkout link_session").attributes["h2s.checkout.state"] == "session_created"
    sql = tree.one("h2s_begin_checkout")
    assert sql.kind == SpanKind.CLIENT
    assert sql.attributes["db.system.name"] == "postgresql"
    assert sql.attributes["db.stored_procedure.name"] == "h2s_begin_checkout"
    assert "ana@example.com" not in json.dumps(dict(sql.attributes))  # never its arguments
    call = tree.one("stripe create_session")
    assert call.attributes["h2s.stripe.idempotency_key_row"] == (
        f"h2s_checkouts/{body['checkout_trace_id']}"
    )
    assert call.attributes["h2s.stripe.idempotency_key"] == (
        f"h2s-checkout-{body['checkout_trace_id']}-session"
    )
    assert call.attributes["http.response.status_code"] == 200
    assert call.attributes["h2s.stripe.request_id"].startswith("req_")

    # Joined: every step of the checkout names the storefront's trace.
    steps = (await timeline(traced, body["checkout_trace_id"], admin))["steps"]
    assert [s["otel_trace_id"] for s in steps] == [STOREFRONT_TRACE] * len(steps)

    # And the request's log lines carry the trace and their span.
    log_lines.flush()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    [request_line] = [
        line
        for line in lines
        if line.get("event") == "request" and line.get("path") == "/api/checkout"
    ]
    assert request_line["trace_id"] == STOREFRONT_TRACE
    assert request_line["span_id"] == hex_id(server.context.span_id, 16)


async def test_the_route_makes_the_same_spans_as_the_fast_path(traced, spans):
    fast = await traced.post(
        "/api/checkout",
        json=checkout_body(email="fast@example.com"),
        headers={"traceparent": TRACEPARENT},
    )
    fast_tree = Tree(spans.get_finished_spans(), STOREFRONT_TRACE)
    spans.clear()
    # Streamed, without a Content-Length: the fast path never reads it, the route does.
    routed = await traced.post(
        "/api/checkout",
        content=in_chunks(json.dumps(checkout_body(email="route@example.com")).encode()),
        headers={"content-type": "application/json", "traceparent": TRACEPARENT},
    )
    assert (fast.status_code, routed.status_code) == (201, 201)
    routed_tree = Tree(spans.get_finished_spans(), STOREFRONT_TRACE)

    assert fast_tree.edges() >= NEW_CHECKOUT_EDGES
    assert routed_tree.edges() == fast_tree.edges()
    for tree in (fast_tree, routed_tree):
        assert hex_id(tree.one("POST /api/checkout").parent.span_id, 16) == STOREFRONT_SPAN


async def test_a_storefront_that_did_not_sample_gets_no_spans_and_no_trace_ids(
    traced, spans, admin
):
    spans.clear()
    unsampled = f"00-{STOREFRONT_TRACE}-{STOREFRONT_SPAN}-00"
    answer = await traced.post(
        "/api/checkout", json=checkout_body(), headers={"traceparent": unsampled}
    )
    assert answer.status_code == 201
    # The storefront's decision is kept: nothing of the request is recorded (what is
    # recorded is the app's start: its own statements, traces of their own).
    finished = spans.get_finished_spans()
    assert not Tree(finished, STOREFRONT_TRACE).spans
    assert not [s for s in finished if s.kind == SpanKind.SERVER or s.parent is not None]
    steps = (await timeline(traced, answer.json()["checkout_trace_id"], admin))["steps"]
    assert {s["otel_trace_id"] for s in steps} == {None}


async def test_a_replay_is_a_claim_span_and_its_trace_row_names_its_own_trace(traced, spans, admin):
    first = await traced.post("/api/checkout", json=checkout_body())
    spans.clear()
    again = await traced.post("/api/checkout", json=checkout_body())
    assert again.headers["idempotent-replayed"] == "true"
    tree = trace_of(again, spans.get_finished_spans())

    claim = tree.one("checkout claim_and_queue")
    assert claim.attributes["h2s.checkout.outcome"] == "replayed"
    assert claim.attributes["h2s.checkout_trace_id"] == first.json()["checkout_trace_id"]
    # This worker answered the key: the replay went through the batched call, in this trace.
    assert tree.parent_name(tree.one("checkout replay_batch")) == "checkout claim_and_queue"
    assert tree.parent_name(tree.one("h2s_replay_checkouts")) == "checkout replay_batch"
    assert not tree.named("stripe create_session")

    steps = (await timeline(traced, first.json()["checkout_trace_id"], admin))["steps"]
    [replayed] = [s for s in steps if s["event"] == "checkout.replayed"]
    assert replayed["otel_trace_id"] == hex_id(claim.context.trace_id, 32)
    assert steps[0]["otel_trace_id"] != replayed["otel_trace_id"]  # the first request's


async def test_a_stripe_failure_is_an_error_on_its_call_phase_and_request(
    traced, spans, stripe, admin
):
    stripe.faults.add("status", "POST /v1/checkout/sessions", times=10, status=500)
    answer = await traced.post("/api/checkout", json=checkout_body())
    assert answer.status_code == 502
    tree = trace_of(answer, spans.get_finished_spans())

    calls = tree.named("stripe create_session")
    assert calls
    assert all(c.status.status_code == StatusCode.ERROR for c in calls)
    assert calls[0].attributes["http.response.status_code"] == 500
    assert tree.parent_name(calls[0]) == "checkout create_session"
    phase = tree.one("checkout create_session")
    assert phase.status.status_code == StatusCode.ERROR
    assert phase.attributes["error.type"] == "PaymentProviderError"
    server = tree.one("POST /api/checkout")
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes["http.response.status_code"] == 502
    # The clean-up's steps name the same trace.
    steps = (await timeline(traced, answer.json()["checkout_trace_id"], admin))["steps"]
    ended = [
        s for s in steps if s["kind"] == "transition" and s["to_state"] in ("failed", "cleaned")
    ]
    assert len(ended) == 2
    assert {s["otel_trace_id"] for s in ended} == {hex_id(server.context.trace_id, 32)}


async def test_a_webhook_is_linked_to_the_checkouts_trace(traced, spans, stripe, admin):
    made = await traced.post(
        "/api/checkout", json=checkout_body(), headers={"traceparent": TRACEPARENT}
    )
    body = made.json()
    spans.clear()
    session = stripe.complete_session(body["pay"]["session_id"])
    payload, headers = signed(stripe_event("checkout.session.completed", session))
    answer = await traced.post("/api/stripe/webhook", content=payload, headers=headers)
    assert answer.status_code == 200, answer.text
    tree = trace_of(answer, spans.get_finished_spans())

    receipt = tree.one("stripe.webhook checkout.session.completed")
    assert tree.parent_name(receipt) == "POST /api/stripe/webhook"
    assert receipt.attributes["h2s.webhook.result"] == "paid"
    assert receipt.attributes["h2s.checkout_trace_id"] == body["checkout_trace_id"]
    [link] = receipt.links
    assert hex_id(link.context.trace_id, 32) == STOREFRONT_TRACE
    webhook_trace = hex_id(receipt.context.trace_id, 32)
    assert webhook_trace != STOREFRONT_TRACE

    steps = (await timeline(traced, body["checkout_trace_id"], admin))["steps"]
    [paid] = [s for s in steps if s["kind"] == "transition" and s["to_state"] == "paid"]
    assert paid["otel_trace_id"] == webhook_trace


async def test_an_outbound_event_carries_the_checkouts_traceparent(traced, spans, admin):
    with EventReceiver() as receiver:
        subscribed = await traced.post(
            "/api/event-endpoints", json={"url": receiver.url}, headers=admin
        )
        assert subscribed.status_code == 201, subscribed.text
        made = await traced.post(
            "/api/checkout", json=checkout_body(), headers={"traceparent": TRACEPARENT}
        )
        assert made.status_code == 201
        assert (await traced.app.state.event_deliverer.run_once()) == {"delivered": 1}
        [delivery] = receiver.snapshot()

    version, trace_id, span_id, flags = delivery.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", STOREFRONT_TRACE, "01")
    tree = Tree(spans.get_finished_spans(), STOREFRONT_TRACE)
    attempt = tree.one("events.deliver order.created")
    assert hex_id(attempt.context.span_id, 16) == span_id  # the receiver's parent
    assert attempt.kind == SpanKind.CLIENT
    assert attempt.attributes["http.response.status_code"] == 200
    # Its parent is phase 3's span, whose statement wrote the event: stored with the event,
    # so it holds for a delivery from another replica, or long after.
    assert tree.parent_name(attempt) == "checkout link_session"


async def test_a_reconciler_pass_is_a_trace_of_its_own(traced, spans):
    await traced.app.state.reconciler.run_once()
    passes = [s for s in spans.get_finished_spans() if s.name == "reconcile pass"]
    assert len(passes) == 1
    assert passes[0].parent is None
    tree = Tree(spans.get_finished_spans(), hex_id(passes[0].context.trace_id, 32))
    assert {tree.parent_name(s) for s in tree.spans if s.kind == SpanKind.CLIENT} == {
        "reconcile pass"
    }


async def test_the_timeline_links_each_trace_to_the_viewer(
    spans, settings, db, stripe, clock, admin
):
    template = "http://jaeger.test:16686/trace/{trace_id}"
    async with app_client(settings.with_overrides(trace_url_template=template), clock) as client:
        made = await client.post(
            "/api/checkout", json=checkout_body(), headers={"traceparent": TRACEPARENT}
        )
        ref = made.json()["checkout_trace_id"]
        made_timeline = await timeline(client, ref, admin)
        steps = made_timeline["steps"]
        page = await client.get(f"/debug/checkouts/{ref}", headers=admin)
    assert {s["trace_url"] for s in steps} == {f"http://jaeger.test:16686/trace/{STOREFRONT_TRACE}"}
    assert f"OpenTelemetry traces: {STOREFRONT_TRACE}" in trace.render(
        {**made_timeline, "steps": steps}
    )
    assert f'href="http://jaeger.test:16686/trace/{STOREFRONT_TRACE}"' in page.text


async def test_every_route_taking_the_gateway_answers_with_tracing_on(traced, spans, admin):
    """With tracing on the gateway is the traced one, not a StripeGateway: a route whose
    parameter was typed as the concrete class answered 500 (found at issue 26's merge)."""
    made = await traced.post("/api/checkout", json=checkout_body())
    order_id = made.json()["order_id"]
    view = await traced.get(f"/api/checkouts/{order_id}", headers=admin)
    assert view.status_code == 200, view.text
    assert any(s.name.startswith("stripe retrieve_session") for s in spans.get_finished_spans())
