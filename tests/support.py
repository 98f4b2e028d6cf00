"""Test helpers: request bodies, table counts, apps run on the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from h2s_checkout.payments.port import SessionLine, SessionRequest

ADMIN_TOKEN = "test-admin-token-0123456789"
WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
DATA_TABLES = (
    "h2s_catalog_history",
    "h2s_service_area",
    "h2s_admin_sessions",
    "h2s_api_keys",
    "h2s_rate_counters",
    "h2s_event_attempts",
    "h2s_event_deliveries",
    "h2s_events",
    "h2s_event_sequence_floors",
    "h2s_event_endpoints",
    "h2s_webhook_events",
    "h2s_checkout_failures",
    "h2s_checkout_traces",
    "h2s_captures",
    "h2s_dispatch_jobs",
    "h2s_orders",
    "h2s_checkouts",
    "h2s_recipients",
)

# The catalog as db/migrations seeds it: the `db` fixture puts it back before each test, so
# a test (or the contract fuzzer) that changes prices or adds items leaves none behind.
RESEED_CATALOG = """
delete from h2s_service_catalog;
insert into h2s_service_catalog (sku, name, description, unit_amount_cents, max_quantity) values
    ('tv-mount', 'TV wall mounting',
     'Mount one TV up to 75 inches, cables hidden in a raceway.', 14900, 10),
    ('smart-lock', 'Smart lock installation', 'Install and pair one smart deadbolt.', 12900, 10),
    ('ceiling-fan', 'Ceiling fan installation',
     'Replace a fixture with a ceiling fan on an existing box.', 17900, 10),
    ('camera-4', 'Security cameras (4)', 'Mount and configure four outdoor cameras.', 39900, 5),
    ('wifi-mesh', 'Wi-Fi mesh setup',
     'Place and configure a mesh network of up to three nodes.', 9900, 5);
"""


def checkout_body(
    email: str = "ana@example.com", items: list[dict[str, Any]] | None = None, **customer: Any
) -> dict[str, Any]:
    return {
        "customer": {
            "email": email,
            "name": "Ana",
            "phone": "+15555550100",
            "address": {
                "line1": "1 Main St",
                "city": "Austin",
                "state": "TX",
                "postal_code": "78701",
                "country": "US",
            },
            **customer,
        },
        "items": items if items is not None else [{"sku": "tv-mount", "quantity": 1}],
    }


async def in_chunks(body: bytes, size: int = 40) -> AsyncIterator[bytes]:
    """``body`` as a streamed request body: httpx sends it chunked, without a
    Content-Length (which only the route, never the checkout fast path, reads)."""
    for i in range(0, len(body), size):
        yield body[i : i + size]


_WAITING_FOR = """
select count(*) from pg_stat_activity where $1 = any(pg_blocking_pids(pid))
"""


async def most_waiting_for(holder: asyncpg.Connection, *, polls: int, every_s: float = 0.02) -> int:
    """The most backends seen waiting for a lock ``holder`` holds, over ``polls`` looks
    ``every_s`` apart (long enough for every admitted waiter to reach PostgreSQL)."""
    pid = holder.get_server_pid()
    seen = 0
    for _ in range(polls):
        await asyncio.sleep(every_s)
        seen = max(seen, await holder.fetchval(_WAITING_FOR, pid))
    return seen


async def table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    return {t: await conn.fetchval(f"select count(*) from {t}") for t in DATA_TABLES}


def command_for(body: dict[str, Any], idempotency_key: str | None = None) -> Any:
    """The flow's command for a request body, for tests that drive the flow directly."""
    import msgspec

    from h2s_checkout.api.checkout import to_command
    from h2s_checkout.api.schemas import CheckoutRequest

    return to_command(msgspec.convert(body, CheckoutRequest), idempotency_key)


def session_request(order_id: str, key: str) -> SessionRequest:
    """A Checkout Session request as phase 1 would store it, for calling a gateway directly."""
    return SessionRequest(
        idempotency_key=key,
        client_reference_id=order_id,
        customer_email="nobody@example.com",
        lines=(SessionLine("TV wall mounting", 14900, 1, "usd"),),
        success_url="http://shop.test/ok",
        cancel_url="http://shop.test/cancel",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        metadata={"order_id": order_id},
    )


def stripe_event(event_type: str, session: dict[str, Any], event_id: str | None = None) -> dict:
    """A Stripe event object around a Checkout Session, as Stripe delivers it."""
    import time
    import uuid

    return {
        "id": event_id or f"evt_test_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": session},
    }


def signed(event: dict, secret: str = WEBHOOK_SECRET, timestamp: int | None = None):
    """(body, headers) for posting an event with Stripe's signature."""
    import json

    import stripe

    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp)
    return body, {"Stripe-Signature": header, "content-type": "application/json"}


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    """Run the app's lifespan on the test's own event loop.

    Litestar's AsyncTestClient runs the app on a portal thread, one request at a time;
    here concurrent requests really overlap, and tests can reach app.state directly.
    """
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"app did not start: {started}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


@asynccontextmanager
async def app_client(settings: Any, clock: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of one more app on the same database: another replica, or other settings."""
    from h2s_checkout.app import create_app

    app = create_app(settings, clock=clock)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as test:
            test.app = app  # type: ignore[attr-defined]
            yield test


# -- metrics ---------------------------------------------------------------------------------


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics, by name and labels."""
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(
    before: dict[tuple[str, tuple], float],
    after: dict[tuple[str, tuple], float],
    name: str,
    **labels: str,
) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def comparable(answer: httpx.Response, *ignored: str) -> tuple[int, dict[str, str], bytes]:
    """An answer's status, headers and body, without x-request-id (each request's own)
    and the ``ignored`` headers: what two servers answering alike must agree on."""
    skip = {"x-request-id", *ignored}
    headers = {k: v for k, v in answer.headers.items() if k not in skip}
    return answer.status_code, headers, answer.content
