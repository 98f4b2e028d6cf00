"""POST /api/orders/{id}/cancel: unpaid orders cancelled, paid ones refunded exactly once."""

from __future__ import annotations

import asyncio

import pytest

from stripe_checkout_emulator.ledger import RefundRule
from support import checkout_body, signed, stripe_event, table_counts

REFUNDS = "POST /v1/refunds"


async def checkout(client, email: str = "ana@example.com") -> dict:
    answer = await client.post("/api/checkout", json=checkout_body(email=email))
    assert answer.status_code == 201, answer.text
    return answer.json()


async def deliver(client, event: dict):
    body, headers = signed(event)
    answer = await client.post("/api/stripe/webhook", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer


async def paid(client, stripe, email: str = "ana@example.com") -> dict:
    """A checkout the customer paid, its completed event delivered."""
    body = await checkout(client, email)
    session = stripe.complete_session(body["pay"]["session_id"])
    await deliver(client, stripe_event("checkout.session.completed", session))
    return body


async def cancel(client, admin, order_id: str, reason: str = "requested_by_customer", **extra):
    headers = {**admin, **extra.pop("headers", {})}
    return await client.post(
        f"/api/orders/{order_id}/cancel", json={"reason": reason, **extra}, headers=headers
    )


async def states(db, order_id: str) -> tuple[str, str, str]:
    row = await db.fetchrow(
        "select c.state, o.status as order_status, j.status as job_status"
        " from h2s_orders o join h2s_checkouts c on c.checkout_id = o.checkout_id"
        " join h2s_dispatch_jobs j on j.order_id = o.order_id where o.order_id = $1",
        order_id,
    )
    return (row["state"], row["order_status"], row["job_status"])


async def steps(client, admin, order_id: str) -> list[dict]:
    answer = await client.get(f"/api/orders/{order_id}/timeline", headers=admin)
    return answer.json()["steps"]


async def test_an_unpaid_order_is_cancelled_with_its_session(client, db, stripe, admin):
    body = await checkout(client)

    answer = await cancel(client, admin, body["order_id"], note="customer called")

    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert view["state"] == "cancelled"
    assert view["order"]["status"] == "cancelled"
    assert view["job"]["status"] == "cancelled"
    assert view["refund"] is None
    assert await states(db, body["order_id"]) == ("cancelled", "cancelled", "cancelled")
    assert stripe.get_session(body["pay"]["session_id"])["status"] == "expired"
    assert await db.fetchval("select needs_settlement from h2s_checkouts") is False
    cancelled = next(
        s for s in await steps(client, admin, body["order_id"]) if s["event"] == "cancel"
    )
    assert (cancelled["from_state"], cancelled["to_state"]) == ("session_created", "cancelled")
    assert cancelled["detail"]["reason"] == "requested_by_customer"
    assert cancelled["detail"]["note"] == "customer called"
    assert cancelled["detail"]["actor"] == "bootstrap"

    # Its expiry event arrives afterwards and changes nothing.
    expired = stripe_event(
        "checkout.session.expired", stripe.get_session(body["pay"]["session_id"])
    )
    assert (await deliver(client, expired)).json()["result"] == "already_cancelled"
    again = await cancel(client, admin, body["order_id"])
    assert again.status_code == 200
    assert again.json()["state"] == "cancelled"


async def test_a_paid_order_has_its_job_cancelled_and_is_refunded_once(client, db, stripe, admin):
    body = await paid(client, stripe)
    assert await states(db, body["order_id"]) == ("paid", "paid", "dispatchable")

    answer = await cancel(client, admin, body["order_id"], reason="duplicate")

    # Settled within the request: the status says what the body says (refunded), not 202.
    assert answer.status_code == 200, answer.text
    view = answer.json()
    refund = view["refund"]
    assert refund["status"] == "succeeded"
    assert refund["reason"] == "duplicate"
    assert refund["amount_cents"] == 14900
    assert view["state"] == "refunded"
    assert await states(db, body["order_id"]) == ("refunded", "refunded", "cancelled")
    at_stripe = stripe.list_refunds()
    assert len(at_stripe) == 1
    assert at_stripe[0]["amount"] == 14900
    assert at_stripe[0]["reason"] == "duplicate"
    assert at_stripe[0]["metadata"]["order_id"] == body["order_id"]
    sent = stripe.find_requests(REFUNDS)
    assert sent[0].idempotency_key == f"h2s-refund-{body['order_id']}-1"
    events = [(s["event"], s["to_state"]) for s in await steps(client, admin, body["order_id"])]
    assert ("refund", "refund_pending") in events
    assert ("complete_refund", "refunded") in events

    # Stripe's own events about it arrive afterwards, twice: nothing moves again.
    for event in [e for e in stripe.events if e["type"].startswith(("refund.", "charge."))] * 2:
        await deliver(client, event)
    again = await cancel(client, admin, body["order_id"])
    assert again.status_code == 200
    assert again.json()["state"] == "refunded"
    assert len(stripe.list_refunds()) == 1
    assert len(stripe.find_requests(REFUNDS)) == 1


async def test_other_reason_is_kept_but_not_sent(client, db, stripe, admin):
    body = await paid(client, stripe)
    answer = await cancel(client, admin, body["order_id"], reason="other", note="moved house")
    assert answer.status_code == 200
    assert answer.json()["refund"]["reason"] == "other"
    assert stripe.list_refunds()[0]["reason"] is None


async def test_a_pending_refund_settles_through_its_event(client, db, stripe, admin):
    body = await paid(client, stripe)
    stripe.add_refund_rule(RefundRule(outcome="succeeded", delay_s=None))

    answer = await cancel(client, admin, body["order_id"])

    assert answer.status_code == 202
    assert answer.json()["state"] == "refund_pending"
    assert answer.json()["refund"]["status"] == "pending"
    assert await states(db, body["order_id"]) == ("refund_pending", "refund_pending", "cancelled")
    again = await cancel(client, admin, body["order_id"])
    assert again.status_code == 202
    assert again.json()["state"] == "refund_pending"

    refund_id = stripe.list_refunds()[0]["id"]
    stripe.settle_refund(refund_id, succeeded=True)
    updated = [e for e in stripe.events if e["type"] == "refund.updated"][-1]
    assert (await deliver(client, updated)).json()["result"] == "succeeded"
    assert await states(db, body["order_id"]) == ("refunded", "refunded", "cancelled")
    assert len(stripe.find_requests(REFUNDS)) == 1


async def test_a_refund_that_fails_later_ends_refund_failed_and_can_be_retried(
    client, db, stripe, admin
):
    body = await paid(client, stripe)
    stripe.add_refund_rule(RefundRule(outcome="failed", delay_s=None, times=1))
    await cancel(client, admin, body["order_id"])
    refund_id = stripe.list_refunds()[0]["id"]
    stripe.settle_refund(refund_id, succeeded=False)
    for event in [e for e in stripe.events if e["type"] in ("refund.updated", "refund.failed")]:
        await deliver(client, event)

    assert await states(db, body["order_id"]) == ("refund_failed", "refund_failed", "cancelled")
    failed = next(
        s for s in await steps(client, admin, body["order_id"]) if s["event"] == "fail_refund"
    )
    assert failed["detail"]["failure_reason"] == "expired_or_canceled_card"
    view = (await client.get(f"/api/checkouts/{body['checkout_trace_id']}", headers=admin)).json()
    assert view["refunds"][0]["status"] == "failed"
    assert view["refunds"][0]["failure_reason"] == "expired_or_canceled_card"

    # A person tries again: a second refund, with a key of its own.
    retry = await cancel(client, admin, body["order_id"])
    assert retry.status_code == 200  # refunded within the request
    assert retry.json()["refund"]["attempt"] == 2
    assert await states(db, body["order_id"]) == ("refunded", "refunded", "cancelled")
    keys = [r.idempotency_key for r in stripe.find_requests(REFUNDS)]
    assert keys == [f"h2s-refund-{body['order_id']}-1", f"h2s-refund-{body['order_id']}-2"]


async def test_a_refund_call_that_fails_is_sent_again_by_the_reconciler(
    client, db, stripe, admin, clock
):
    body = await paid(client, stripe)
    # A 500, then an answer that never comes back though Stripe made the refund.
    stripe.faults.add("status", REFUNDS, status=500, times=2)
    answer = await cancel(client, admin, body["order_id"])
    assert answer.status_code == 202
    assert answer.json()["state"] == "refund_pending"
    assert stripe.list_refunds() == []
    stripe.faults.add("timeout", REFUNDS, seconds=3, processed=True, times=2)

    clock.advance(seconds=91)  # past the lease of the request that owed it
    report = await client.app.state.reconciler.run_once()
    assert report.actions["refund_send_failed"] == 1
    assert len(stripe.list_refunds()) == 1  # made, though its answer was lost

    clock.advance(seconds=91)
    report = await client.app.state.reconciler.run_once()
    assert report.actions["refund_succeeded"] == 1
    assert await states(db, body["order_id"]) == ("refunded", "refunded", "cancelled")
    assert len(stripe.list_refunds()) == 1
    keys = {r.idempotency_key for r in stripe.find_requests(REFUNDS)}
    assert keys == {f"h2s-refund-{body['order_id']}-1"}


async def test_the_refund_event_before_the_cancels_own_answer_is_written(client, db, stripe, admin):
    body = await paid(client, stripe)
    # Stripe makes the refund but the answer is lost: the event is all we hear, twice.
    stripe.faults.add("drop", REFUNDS, processed=True, times=2)
    answer = await cancel(client, admin, body["order_id"])
    assert answer.json()["state"] == "refund_pending"
    for event in [e for e in stripe.events if e["type"] == "refund.created"] * 2:
        await deliver(client, event)

    assert await states(db, body["order_id"]) == ("refunded", "refunded", "cancelled")
    stored = await db.fetchrow("select * from h2s_refunds")
    assert stored["stripe_refund_id"] == stripe.list_refunds()[0]["id"]
    report = await client.app.state.reconciler.run_once()
    assert not any(action.startswith("refund") for action in report.actions)
    assert len(stripe.list_refunds()) == 1


async def test_concurrent_cancels_of_one_paid_order_make_one_refund(client, db, stripe, admin):
    body = await paid(client, stripe)

    answers = await asyncio.gather(*(cancel(client, admin, body["order_id"]) for _ in range(20)))

    assert {a.status_code for a in answers} <= {200, 202}
    for a in answers:
        assert a.status_code == (202 if a.json()["state"] == "refund_pending" else 200)
    assert sum(a.json()["refund"]["attempt"] == 1 for a in answers) == 20
    assert len(stripe.list_refunds()) == 1
    assert len(stripe.find_requests(REFUNDS)) == 1
    transitions = await db.fetchval(
        "select count(*) from h2s_checkout_traces where event = 'refund' and kind = 'transition'"
    )
    assert transitions == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"reason": "changed_mind"},
        {},
        {"reason": "duplicate", "note": "x" * 501},
        {"reason": "duplicate", "note": "bell\x07"},
        {"reason": "duplicate", "amount": 100},
    ],
    ids=["unknown reason", "no reason", "note too long", "control character", "unknown field"],
)
async def test_bad_input_is_400_and_writes_nothing(client, db, stripe, admin, bad):
    body = await paid(client, stripe)
    before = await table_counts(db)
    answer = await client.post(f"/api/orders/{body['order_id']}/cancel", json=bad, headers=admin)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"
    assert await table_counts(db) == before
    assert await states(db, body["order_id"]) == ("paid", "paid", "dispatchable")
    assert stripe.list_refunds() == []


async def test_an_expired_order_is_not_cancellable(client, db, stripe, admin):
    body = await checkout(client)
    session = stripe.expire_session(body["pay"]["session_id"])
    await deliver(client, stripe_event("checkout.session.expired", session))

    answer = await cancel(client, admin, body["order_id"])

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "not_cancellable"
    assert answer.json()["error"]["state"] == "expired"


async def test_unknown_order_is_404_and_cancel_needs_the_token(client, db, admin):
    answer = await cancel(client, admin, "ORD-0000000000000000")
    assert answer.status_code == 404
    body = await checkout(client)
    assert (await cancel(client, {}, body["order_id"])).status_code == 401


async def test_an_idempotency_key_replays_and_refuses_another_request(client, db, stripe, admin):
    body = await paid(client, stripe)
    key = {"Idempotency-Key": "cancel-1"}
    first = await cancel(client, admin, body["order_id"], headers=key)
    again = await cancel(client, admin, body["order_id"], headers=key)
    other = await cancel(client, admin, body["order_id"], reason="fraudulent", headers=key)

    assert first.status_code == 200
    assert first.json()["state"] == "refunded"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["refund"]["id"] == first.json()["refund"]["id"]
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(stripe.list_refunds()) == 1


async def test_a_late_payment_on_a_cleaned_checkout_is_refunded_once(client, db, stripe, admin):
    stripe.faults.add("status", "POST /v1/checkout/sessions", status=500, times=1)
    stripe.faults.add("status", "POST /v1/checkout/sessions/*/expire", status=500, times=10)
    answer = await client.post("/api/checkout", json=checkout_body())
    assert answer.status_code == 201  # the retry made it
    body = answer.json()
    # Cleaned up anyway (a later failure); the customer pays the link still open.
    await db.execute(
        "update h2s_checkouts set state = 'cleaned' where checkout_id = $1::uuid",
        body["checkout_trace_id"],
    )
    session = stripe.complete_session(body["pay"]["session_id"])
    event = stripe_event("checkout.session.completed", session)
    assert (await deliver(client, event)).json()["result"] == "needs_refund"

    reports = await asyncio.gather(
        client.app.state.reconciler.run_once(), client.app.state.reconciler.run_once()
    )

    assert sum(r.actions["refund_succeeded"] for r in reports) == 1
    assert len(stripe.list_refunds()) == 1
    refund = await db.fetchrow("select * from h2s_refunds")
    assert (refund["cause"], refund["reason"], refund["status"]) == (
        "late_payment",
        "late_payment",
        "succeeded",
    )
    assert await db.fetchval("select state from h2s_checkouts") == "cleaned"
    events = [s["event"] for s in await steps(client, admin, body["order_id"])]
    assert "payment.needs_refund" in events
    assert "refund.succeeded" in events
    # The same payment told again (its event redelivered with another id) owes nothing more.
    event["id"] = "evt_again"
    assert (await deliver(client, event)).json()["result"] == "refund_already_owed"
    assert (await client.app.state.reconciler.run_once()).actions["refund_succeeded"] == 0
    assert len(stripe.list_refunds()) == 1


async def test_a_cancels_idempotency_key_is_forgotten_after_retention(client, db, stripe, admin):
    from datetime import timedelta

    from h2s_checkout.flows.reaper import reap_keys

    body = await checkout(client)
    await cancel(client, admin, body["order_id"], headers={"Idempotency-Key": "cancel-old"})
    await db.execute("update h2s_request_keys set created_at = now() - interval '73 hours'")

    assert await reap_keys(client.app.state.db_pool, timedelta(hours=72)) == 1
    assert await db.fetchval("select count(*) from h2s_request_keys") == 0


async def subscribe(db) -> None:
    from h2s_checkout.domain.events import new_secret
    from h2s_checkout.store import outbox

    await outbox.insert_endpoint(
        db,
        "ep_dispatch",
        url="http://127.0.0.1:9/h",
        description="",
        event_types=["*"],
        secret=new_secret(),
    )


async def order_events(db, order_id: str) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        "select type, body->'data'->'order'->>'status' as order_status,"
        " body->'data'->'job'->>'status' as job_status"
        " from h2s_events where order_id = $1 order by sequence",
        order_id,
    )
    return [(r["type"], r["order_status"], r["job_status"]) for r in rows]


async def test_each_change_a_cancel_makes_is_an_order_event(client, db, stripe, admin):
    await subscribe(db)
    unpaid = await checkout(client)
    await cancel(client, admin, unpaid["order_id"])
    assert await order_events(db, unpaid["order_id"]) == [
        ("order.created", "pending_payment", "queued"),
        ("order.cancelled", "cancelled", "cancelled"),
    ]

    body = await paid(client, stripe, email="bo@example.com")
    stripe.add_refund_rule(RefundRule(outcome="failed", delay_s=None, times=1))
    await cancel(client, admin, body["order_id"])
    stripe.settle_refund(stripe.list_refunds()[0]["id"], succeeded=False)
    for event in [e for e in stripe.events if e["type"] == "refund.failed"]:
        await deliver(client, event)
    await cancel(client, admin, body["order_id"])  # the person tries again; it succeeds

    assert await order_events(db, body["order_id"]) == [
        ("order.created", "pending_payment", "queued"),
        ("order.paid", "paid", "dispatchable"),
        ("order.refund_pending", "refund_pending", "cancelled"),
        ("order.refund_failed", "refund_failed", "cancelled"),
        ("order.refund_pending", "refund_pending", "cancelled"),
        ("order.refunded", "refunded", "cancelled"),
    ]
