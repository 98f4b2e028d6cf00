"""Real deliveries: the emulator signs and posts its events to a running server, twice,
out of order, and before the session is linked; each is applied exactly once."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from stripe_checkout_emulator.webhooks import WebhookRule
from support import WEBHOOK_SECRET, checkout_body

pytestmark = pytest.mark.slow


@pytest.fixture
def delivering(servers, emulator):
    """A server that the emulator delivers its events to, signed with the shared secret."""
    server = servers()
    hooks = emulator.state.webhooks
    hooks.url, hooks.secret = f"{server.url}/api/stripe/webhook", WEBHOOK_SECRET
    yield server
    hooks.url = None


async def settled(stripe, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not stripe.webhooks.idle and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert stripe.webhooks.idle


async def checkout(server, email: str = "ana@example.com") -> dict:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(f"{server.url}/api/checkout", json=checkout_body(email=email))
    assert answer.status_code == 201, answer.text
    return answer.json()


async def outcome(db, order_id: str) -> tuple[str, str, str]:
    row = await db.fetchrow(
        "select c.state, o.status, j.status as job from h2s_checkouts c"
        " join h2s_orders o using (order_id) join h2s_dispatch_jobs j using (order_id)"
        " where c.order_id = $1",
        order_id,
    )
    return row["state"], row["status"], row["job"]


async def applied(db) -> dict[str, int]:
    rows = await db.fetch("select type, count(*) from h2s_webhook_events group by type")
    return {r["type"]: r["count"] for r in rows}


async def test_paid_delivered_twice_is_applied_once(delivering, db, stripe):
    stripe.webhooks.add_rule(WebhookRule(kind="duplicate", type="checkout.session.completed"))
    body = await checkout(delivering)

    stripe.complete_session(body["pay"]["session_id"])
    await settled(stripe)

    assert await outcome(db, body["order_id"]) == ("paid", "paid", "dispatchable")
    assert await applied(db) == {"checkout.session.completed": 1}
    ok = [d for d in stripe.webhooks.deliveries if d.ok]
    assert len(ok) == 2  # both copies were accepted (200), only one applied
    pays = await db.fetchval(
        "select count(*) from h2s_checkout_traces where kind = 'transition' and event = 'pay'"
    )
    assert pays == 1


async def test_expired_delivered_twice_cancels_the_job_once(delivering, db, stripe):
    stripe.webhooks.add_rule(WebhookRule(kind="duplicate", type="checkout.session.expired"))
    body = await checkout(delivering)

    stripe.expire_session(body["pay"]["session_id"])
    await settled(stripe)

    assert await outcome(db, body["order_id"]) == ("expired", "expired", "cancelled")
    assert await applied(db) == {"checkout.session.expired": 1}


async def test_async_payment_failed_delivered_twice(delivering, db, stripe):
    stripe.webhooks.add_rule(WebhookRule(kind="duplicate", type="*async_payment_failed"))
    body = await checkout(delivering)

    stripe.complete_session(body["pay"]["session_id"], delayed=True, succeeds=False)
    await settled(stripe)
    assert await outcome(db, body["order_id"]) == ("session_created", "pending_payment", "queued")
    stripe.settle_async_payment(body["pay"]["session_id"], False)
    await settled(stripe)

    assert await outcome(db, body["order_id"]) == ("payment_failed", "cancelled", "cancelled")
    assert await applied(db) == {
        "checkout.session.completed": 1,
        "checkout.session.async_payment_failed": 1,
    }


async def test_events_delivered_out_of_order(delivering, db, stripe):
    body = await checkout(delivering)
    stripe.webhooks.hold()
    stripe.complete_session(body["pay"]["session_id"], delayed=True, succeeds=True)
    stripe.settle_async_payment(body["pay"]["session_id"], True)
    released = stripe.webhooks.release("reverse")  # succeeded arrives before completed
    await settled(stripe)

    assert len(released) == 2
    assert await outcome(db, body["order_id"]) == ("paid", "paid", "dispatchable")
    assert await applied(db) == {
        "checkout.session.async_payment_succeeded": 1,
        "checkout.session.completed": 1,
    }


async def test_an_event_before_the_session_is_linked_lands(delivering, db, stripe):
    # Stripe is slow to answer the create: the customer pays and the event arrives
    # while the storefront's request is still waiting for the session.
    stripe.faults.add("latency", "POST /v1/checkout/sessions", seconds=1.5, processed=True)
    request = asyncio.create_task(checkout(delivering))
    while not stripe.sessions:
        await asyncio.sleep(0.02)
    stripe.complete_session(stripe.sessions[0]["id"])
    await settled(stripe)
    assert await db.fetchval("select state from h2s_checkouts") == "paid"

    body = await request

    assert body["pay"]["session_id"] == stripe.sessions[0]["id"]
    assert await outcome(db, body["order_id"]) == ("paid", "paid", "dispatchable")
