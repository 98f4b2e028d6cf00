"""POST /api/orders/{id}/refunds: parts of a paid order refunded, each once, never more
than was captured; the order partially_refunded until all of it is back."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from h2s_checkout.app import create_app
from h2s_checkout.settings import Settings
from stripe_checkout_emulator.ledger import RefundRule
from support import checkout_body, running, signed, stripe_event

REFUNDS = "POST /v1/refunds"
TOTAL = 14900


async def deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> dict[str, Any]:
    body, headers = signed(event)
    answer = await client.post("/api/stripe/webhook", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def paid(client: httpx.AsyncClient, stripe: Any) -> dict[str, Any]:
    answer = await client.post("/api/checkout", json=checkout_body())
    body = answer.json()
    session = stripe.complete_session(body["pay"]["session_id"])
    await deliver(client, stripe_event("checkout.session.completed", session))
    return body


async def refund(client, admin, order_id: str, amount: int, **extra: Any) -> httpx.Response:
    headers = {**admin, **extra.pop("headers", {})}
    return await client.post(
        f"/api/orders/{order_id}/refunds",
        json={"amount_cents": amount, "reason": "requested_by_customer", **extra},
        headers=headers,
    )


def refunds_made(stripe: Any) -> list[Any]:
    return [r for r in stripe.find_requests(REFUNDS) if not r.replayed and r.status == 200]


async def test_two_parts_then_one_too_many_then_the_exact_rest(client, db, stripe, admin):
    body = await paid(client, stripe)
    order_id = body["order_id"]

    first = await refund(client, admin, order_id, 4000, note="one mount not installed")
    second = await refund(client, admin, order_id, 3000)
    too_much = await refund(client, admin, order_id, TOTAL - 7000 + 1)
    rest = await refund(client, admin, order_id, TOTAL - 7000)

    assert first.status_code == 200, first.text
    assert first.json()["state"] == "partially_refunded"
    assert second.json()["order"]["amount_refunded_cents"] == 7000
    assert too_much.status_code == 422
    assert too_much.json()["error"]["code"] == "amount_exceeds_refundable"
    assert too_much.json()["error"]["refundable_cents"] == TOTAL - 7000
    assert rest.status_code == 200, rest.text
    view = rest.json()
    assert (view["state"], view["order"]["status"]) == ("refunded", "refunded")
    assert view["order"]["amount_captured_cents"] == TOTAL
    assert view["order"]["amount_refunded_cents"] == TOTAL
    assert view["order"]["amount_remaining_cents"] == 0
    made = refunds_made(stripe)
    assert [r.params["amount"] for r in made] == ["4000", "3000", str(TOTAL - 7000)]
    assert [r.idempotency_key for r in made] == [f"h2s-refund-{order_id}-{n}" for n in (1, 2, 3)]
    after = await refund(client, admin, order_id, 1)
    assert after.status_code == 409
    assert after.json()["error"]["code"] == "not_refundable"


async def test_get_order_shows_captured_refunded_and_remaining(client, stripe, admin):
    body = await paid(client, stripe)
    await refund(client, admin, body["order_id"], 2500)

    answer = await client.get(f"/api/orders/{body['order_id']}", headers=admin)

    assert answer.status_code == 200, answer.text
    order = answer.json()["order"]
    assert (order["amount_captured_cents"], order["amount_refunded_cents"]) == (TOTAL, 2500)
    assert order["amount_remaining_cents"] == TOTAL - 2500
    assert [r["amount_cents"] for r in answer.json()["refunds"]] == [2500]
    missing = await client.get("/api/orders/ORD-0000000000000000", headers=admin)
    assert missing.status_code == 404


async def test_parts_asked_for_at_once_never_exceed_the_payment(client, db, stripe, admin):
    body = await paid(client, stripe)

    answers = await asyncio.gather(
        *(refund(client, admin, body["order_id"], 4000) for _ in range(6))
    )

    assert sorted(a.status_code for a in answers) == [200, 200, 200, 422, 422, 422]
    assert len(refunds_made(stripe)) == 3
    assert await db.fetchval("select sum(amount_cents) from h2s_refunds") == 12000


async def test_a_pending_part_counts_until_it_settles_by_its_event(client, db, stripe, admin):
    body = await paid(client, stripe)
    stripe.add_refund_rule(RefundRule(outcome="succeeded", delay_s=None))

    pending = await refund(client, admin, body["order_id"], 5000)
    over = await refund(client, admin, body["order_id"], TOTAL - 5000 + 1)
    [made] = stripe.list_refunds()
    settled = stripe.settle_refund(made["id"], True)
    [updated] = [e for e in stripe.events if e["type"] == "refund.updated"]
    result = await deliver(client, updated)
    again = await deliver(client, updated)

    assert pending.status_code == 202, pending.text
    assert pending.json()["state"] == "paid"
    assert pending.json()["order"]["amount_refund_pending_cents"] == 5000
    assert over.status_code == 422
    assert settled["status"] == "succeeded"
    assert result["result"] == "succeeded"
    assert again["duplicate"] is True
    state = await db.fetchval("select state from h2s_checkouts")
    assert state == "partially_refunded"


async def test_a_cancel_after_a_part_refunds_the_rest(client, db, stripe, admin):
    body = await paid(client, stripe)
    await refund(client, admin, body["order_id"], 4000)

    answer = await client.post(
        f"/api/orders/{body['order_id']}/cancel",
        json={"reason": "requested_by_customer"},
        headers=admin,
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "refunded"
    assert [r.params["amount"] for r in refunds_made(stripe)] == ["4000", str(TOTAL - 4000)]


async def test_the_same_key_replays_and_another_body_is_refused(client, stripe, admin):
    body = await paid(client, stripe)
    key = {"Idempotency-Key": "crm-refund-77"}

    first = await refund(client, admin, body["order_id"], 1000, headers=key)
    same = await refund(client, admin, body["order_id"], 1000, headers=key)
    other = await refund(client, admin, body["order_id"], 2000, headers=key)

    assert first.status_code == 200
    assert same.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert len(refunds_made(stripe)) == 1


@pytest.mark.parametrize(
    "body",
    [{"amount_cents": 0, "reason": "other"}, {"amount_cents": 10}, {"amount_cents": "1"}],
)
async def test_bad_bodies_are_400_and_write_nothing(client, db, stripe, admin, body):
    order = await paid(client, stripe)

    answer = await client.post(f"/api/orders/{order['order_id']}/refunds", json=body, headers=admin)

    assert answer.status_code == 400, answer.text
    assert await db.fetchval("select count(*) from h2s_refunds") == 0


async def test_an_unpaid_order_is_not_refundable(client, stripe, admin):
    answer = await client.post("/api/checkout", json=checkout_body())

    refused = await refund(client, admin, answer.json()["order_id"], 100)

    assert refused.status_code == 409
    assert refused.json()["error"]["state"] == "session_created"


@pytest.fixture
async def held_client(settings: Settings, db, stripe, clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(dataclasses.replace(settings, capture="on_completion"), clock=clock)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as test:
            yield test


async def test_after_a_partial_capture_refunds_stop_at_what_was_captured(
    held_client, stripe, admin
):
    body = await paid(held_client, stripe)
    done = await held_client.post(
        f"/api/jobs/{body['job_id']}/complete", json={"final_amount_cents": 6000}, headers=admin
    )
    assert done.status_code == 200, done.text

    over = await refund(held_client, admin, body["order_id"], 6001)
    whole = await refund(held_client, admin, body["order_id"], 6000)

    assert over.status_code == 422
    assert whole.status_code == 200, whole.text
    assert whole.json()["state"] == "refunded"
