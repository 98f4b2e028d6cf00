"""A real `serve` with OTEL_EXPORTER_OTLP_ENDPOINT set exports its spans over OTLP/HTTP (the
SDK's batch processor) to a receiver decoding the protobuf, as a collector would: a
checkout sent with a traceparent is one trace holding the HTTP span, both phases, the
database calls and the Stripe call; its timeline shows that trace id, and the outbound
event it causes reaches its subscriber with a traceparent of that trace."""

from __future__ import annotations

import base64

import httpx
import pytest

from events_receiver import EventReceiver
from otlp_receiver import OtlpReceiver
from support import ADMIN_TOKEN, checkout_body

pytestmark = pytest.mark.slow

TRACE = "0af7651916cd43dd8448eb211c80319c"
STOREFRONT_SPAN = "b7ad6b7169203331"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EXPECTED = {
    "POST /api/checkout",
    "checkout claim_and_queue",
    "h2s_begin_checkout",
    "checkout create_session",
    "stripe create_session",
    "checkout link_session",
    "h2s_link_session",
}


async def test_a_checkout_is_one_exported_trace_joined_to_its_timeline(servers):
    secret = "whsec_" + base64.b64encode(b"e2e-otel-secret-24-bytes").decode()
    with OtlpReceiver() as collector, EventReceiver() as subscriber:
        server = servers(
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
            OTEL_SERVICE_NAME="h2s-checkout-e2e",
            OTEL_BSP_SCHEDULE_DELAY="200",
            H2S_EVENT_ENDPOINT_URL=subscriber.url,
            H2S_EVENT_ENDPOINT_SECRET=secret,
            H2S_EVENTS_ALLOW_PRIVATE="true",
        )
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            answer = await http.post(
                "/api/checkout",
                json=checkout_body(),
                headers={"traceparent": f"00-{TRACE}-{STOREFRONT_SPAN}-01"},
            )
            assert answer.status_code == 201, answer.text
            ref = answer.json()["checkout_trace_id"]
            timeline = (await http.get(f"/api/checkouts/{ref}/timeline", headers=ADMIN)).json()
        spans = collector.trace(TRACE, EXPECTED)
        [delivery] = await subscriber.until(1)

    assert collector.content_types == {"application/x-protobuf"}
    by_id = {s.span_id: s for s in spans}
    server_span = next(s for s in spans if s.name == "POST /api/checkout")
    assert server_span.parent_span_id == STOREFRONT_SPAN
    assert server_span.resource["service.name"] == "h2s-checkout-e2e"
    for name in EXPECTED - {"POST /api/checkout"}:
        span = next(s for s in spans if s.name == name)
        assert span.parent_span_id in by_id, f"{name} has no parent in the trace"
    stripe_call = next(s for s in spans if s.name == "stripe create_session")
    assert by_id[stripe_call.parent_span_id].name == "checkout create_session"
    assert stripe_call.attributes["h2s.stripe.idempotency_key_row"] == f"h2s_checkouts/{ref}"

    assert {s["otel_trace_id"] for s in timeline["steps"]} == {TRACE}
    assert delivery.headers["traceparent"].split("-")[1] == TRACE
