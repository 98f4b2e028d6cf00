"""Signed Stripe events move a checkout to paid or expired, each event id exactly once."""

from __future__ import annotations

import asyncio
import time

import pytest

from h2s_checkout.domain.errors import PaymentProviderError
from support import checkout_body, command_for, signed, stripe_event

WEBHOOK = "/api/stripe/webhook"


async def checkout(client) -> dict:
    answer = await client.post("/api/checkout", json=checkout_body())
    assert answer.status_code == 201
    return answer.json()


async def deliver(client, event, **sign):
    body, headers = signed(event, **sign)
    return await client.post(WEBHOOK, content=body, headers=headers)


async def rows(db, order_id):
    order = await db.fetchrow("select * from h2s_orders where order_id = $1", order_id)
    job = await db.fetchrow("select * from h2s_dispatch_jobs where order_id = $1", order_id)
    state = await db.fetchval("select state from h2s_checkouts where order_id = $1", order_id)
    return state, order["status"], job["status"]


async def test_a_paid_session_makes_the_order_paid_and_the_job_dispatchable(client, db, stripe):
    body = await checkout(client)
    session = stripe.complete_session(body["pay"]["session_id"])
    event = stripe_event("checkout.session.completed", session)

    first = await deliver(client, event)
    again = await deliver(client, event)

    assert first.status_code == 200, first.text
    assert first.json()["result"] == "paid"
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert await rows(db, body["order_id"]) == ("paid", "paid", "dispatchable")
    assert await db.fetchval("select count(*) from h2s_webhook_events") == 1
    transitions = await db.fetchval(
        "select count(*) from h2s_checkout_traces where event = 'pay' and kind = 'transition'"
    )
    assert transitions == 1


async def test_an_expired_session_cancels_the_job(client, db, stripe):
    body = await checkout(client)
    session = stripe.expire_session(body["pay"]["session_id"])
    event = stripe_event("checkout.session.expired", session)

    assert (await deliver(client, event)).json()["result"] == "expired"
    assert (await deliver(client, event)).json()["duplicate"] is True
    assert await rows(db, body["order_id"]) == ("expired", "expired", "cancelled")


async def test_delayed_payment_that_fails_ends_payment_failed(client, db, stripe, admin):
    body = await checkout(client)
    session = stripe.get_session(body["pay"]["session_id"])
    pending = {**session, "status": "complete", "payment_status": "unpaid"}

    waiting = await deliver(client, stripe_event("checkout.session.completed", pending))
    assert waiting.json()["result"] == "awaiting_async_payment"
    assert await rows(db, body["order_id"]) == ("session_created", "pending_payment", "queued")
    steps = await timeline(client, admin, body)
    assert steps[-1]["event"] == "payment.pending"
    assert steps[-1]["detail"]["payment_status"] == "unpaid"

    failed = stripe_event("checkout.session.async_payment_failed", pending)
    assert (await deliver(client, failed)).json()["result"] == "payment_failed"
    assert (await deliver(client, failed)).json()["duplicate"] is True
    # Not "expired": the customer did pay in time, and the debit failed.
    assert await rows(db, body["order_id"]) == ("payment_failed", "cancelled", "cancelled")
    last = (await timeline(client, admin, body))[-1]
    assert (last["event"], last["to_state"]) == ("fail_payment", "payment_failed")
    assert last["detail"]["event_type"] == "checkout.session.async_payment_failed"


async def timeline(client, admin, body) -> list[dict]:
    answer = await client.get(f"/api/orders/{body['order_id']}/timeline", headers=admin)
    return answer.json()["steps"]


async def test_delayed_payment_that_succeeds_ends_paid(client, db, stripe):
    body = await checkout(client)
    session = {
        **stripe.get_session(body["pay"]["session_id"]),
        "status": "complete",
        "payment_status": "paid",
    }
    event = stripe_event("checkout.session.async_payment_succeeded", session)
    assert (await deliver(client, event)).json()["result"] == "paid"
    assert (await deliver(client, event)).json()["duplicate"] is True
    assert await rows(db, body["order_id"]) == ("paid", "paid", "dispatchable")


async def test_events_out_of_order_do_not_undo_a_payment(client, db, stripe):
    body = await checkout(client)
    session = stripe.get_session(body["pay"]["session_id"])
    paid = stripe_event(
        "checkout.session.completed", {**session, "status": "complete", "payment_status": "paid"}
    )
    late_expiry = stripe_event("checkout.session.expired", {**session, "status": "expired"})

    assert (await deliver(client, paid)).json()["result"] == "paid"
    assert (await deliver(client, late_expiry)).json()["result"] == "already_paid"
    assert await rows(db, body["order_id"]) == ("paid", "paid", "dispatchable")


async def test_an_event_before_the_session_is_linked_still_lands(client, db, stripe):
    # The storefront's request is still in phase 2 (Stripe slow to answer) when the
    # customer has already paid and the event arrives.
    stripe.faults.add("latency", "POST /v1/checkout/sessions", seconds=1.0, processed=True)
    request = asyncio.create_task(client.post("/api/checkout", json=checkout_body()))
    while not stripe.sessions:
        await asyncio.sleep(0.02)
    session = stripe.complete_session(stripe.sessions[0]["id"])
    assert await db.fetchval("select state from h2s_checkouts") == "job_queued"

    applied = await deliver(client, stripe_event("checkout.session.completed", session))
    answer = await request

    assert applied.json()["result"] == "paid"
    assert answer.status_code == 201, answer.text
    assert answer.json()["pay"]["session_id"] == session["id"]
    order_id = answer.json()["order_id"]
    assert await rows(db, order_id) == ("paid", "paid", "dispatchable")
    order = await db.fetchrow("select * from h2s_orders")
    assert order["session_id"] == session["id"]
    assert order["metadata_json"]["dispatch_job_id"] == answer.json()["job_id"]


async def test_a_payment_for_a_cleaned_checkout_is_recorded_for_refund(client, db, stripe):
    # The checkout failed and was cleaned; a payment for its order arrives anyway (say a
    # session the provider made but we could not expire in time).
    flow = client.app.state.checkout_flow
    stripe.faults.add("status", "POST /v1/checkout/sessions", status=400)
    with pytest.raises(PaymentProviderError):
        await flow.begin(command_for(checkout_body()))
    stripe.faults.clear()
    order_id = await db.fetchval("select order_id from h2s_orders")
    checkout_id = await db.fetchval("select checkout_id from h2s_checkouts")
    paid_session = {
        "id": "cs_test_paid_after_cleanup",
        "object": "checkout.session",
        "status": "complete",
        "payment_status": "paid",
        "client_reference_id": order_id,
        "metadata": {"order_id": order_id, "checkout_trace_id": str(checkout_id)},
    }

    answer = await deliver(client, stripe_event("checkout.session.completed", paid_session))

    assert answer.status_code == 200
    assert answer.json()["result"] == "needs_refund"
    assert await rows(db, order_id) == ("cleaned", "cancelled", "cancelled")
    failure = await db.fetchrow(
        "select * from h2s_checkout_failures where error_code = 'paid_after_cleanup'"
    )
    assert failure is not None


async def test_a_clock_a_little_ahead_of_ours_is_within_the_tolerance(client, db, stripe):
    body = await checkout(client)
    session = stripe.complete_session(body["pay"]["session_id"])
    payload, headers = signed(
        stripe_event("checkout.session.completed", session), timestamp=int(time.time()) + 60
    )
    answer = await client.post(WEBHOOK, content=payload, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == "paid"


async def test_unknown_event_types_are_acknowledged_and_ignored(client, db):
    event = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})
    answer = await deliver(client, event)
    assert answer.status_code == 200
    assert answer.json()["result"] == "ignored"


@pytest.mark.parametrize(
    "attack",
    ["forged", "stale", "from_the_future", "a_year_ahead", "unsigned", "tampered", "not_json"],
)
async def test_bad_signatures_are_refused_and_change_nothing(client, db, stripe, attack):
    body = await checkout(client)
    session = stripe.complete_session(body["pay"]["session_id"])
    event = stripe_event("checkout.session.completed", session)
    payload, headers = signed(event)
    if attack == "forged":
        payload, headers = signed(event, secret="whsec_not_the_real_secret")
    elif attack == "stale":
        payload, headers = signed(event, timestamp=int(time.time()) - 301)
    elif attack == "from_the_future":
        # Signed with the real secret, so a replay of it would be accepted until then.
        payload, headers = signed(event, timestamp=int(time.time()) + 301)
    elif attack == "a_year_ahead":
        payload, headers = signed(event, timestamp=int(time.time()) + 365 * 24 * 3600)
    elif attack == "unsigned":
        headers.pop("Stripe-Signature")
    elif attack == "tampered":
        payload = payload.replace(body["order_id"], "ORD-SOMEONEELSE")
    elif attack == "not_json":
        payload, headers = "not json", signed(event)[1]

    answer = await client.post(WEBHOOK, content=payload, headers=headers)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_signature"
    assert await db.fetchval("select count(*) from h2s_webhook_events") == 0
    assert await rows(db, body["order_id"]) == ("session_created", "pending_payment", "queued")
