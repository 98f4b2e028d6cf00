"""H2S_CAPTURE=on_completion: the card is held at booking, charged once when the job is done
(POST /api/jobs/{job_id}/complete), released by a cancel, lapsed by Stripe; and the default
policy unchanged beside it."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from h2s_checkout.app import create_app
from h2s_checkout.settings import Settings
from support import checkout_body, running, signed, stripe_event

CAPTURES = "POST /v1/payment_intents/*/capture"
TOTAL = 14900  # one tv-mount


@pytest.fixture
async def held_client(settings: Settings, db, stripe, clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(dataclasses.replace(settings, capture="on_completion"), clock=clock)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as test:
            test.app = app  # type: ignore[attr-defined]
            yield test


async def deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> dict[str, Any]:
    body, headers = signed(event)
    answer = await client.post("/api/stripe/webhook", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def booked(client: httpx.AsyncClient, stripe: Any) -> dict[str, Any]:
    """A checkout paid on the hosted page, its completed event delivered."""
    answer = await client.post("/api/checkout", json=checkout_body())
    assert answer.status_code == 201, answer.text
    body = answer.json()
    session = stripe.complete_session(body["pay"]["session_id"])
    await deliver(client, stripe_event("checkout.session.completed", session))
    return body


async def complete(client, admin, job_id: str, **body: Any) -> httpx.Response:
    headers = {**admin, **body.pop("headers", {})}
    return await client.post(f"/api/jobs/{job_id}/complete", json=body, headers=headers)


async def states(db, order_id: str) -> tuple[str, str, str]:
    row = await db.fetchrow(
        "select c.state, o.status as order_status, j.status as job_status"
        " from h2s_orders o join h2s_checkouts c on c.checkout_id = o.checkout_id"
        " join h2s_dispatch_jobs j on j.order_id = o.order_id where o.order_id = $1",
        order_id,
    )
    return (row["state"], row["order_status"], row["job_status"])


def captures_sent(stripe: Any) -> list[Any]:
    """Capture requests Stripe acted on (not its replays of a stored answer)."""
    return [r for r in stripe.find_requests(CAPTURES) if not r.replayed and r.status == 200]


async def test_a_paid_checkout_is_authorized_and_its_job_dispatchable(
    held_client, db, stripe, admin
):
    body = await booked(held_client, stripe)

    assert await states(db, body["order_id"]) == ("authorized", "authorized", "dispatchable")
    order = (await held_client.get(f"/api/orders/{body['order_id']}", headers=admin)).json()
    assert order["capture_policy"] == "on_completion"
    assert order["order"]["amount_authorized_cents"] == TOTAL
    assert order["order"]["amount_captured_cents"] == 0
    assert order["order"]["authorization_expires_at"] is not None
    [create] = stripe.find_requests("POST /v1/checkout/sessions")
    assert create.params["payment_intent_data"]["capture_method"] == "manual"


async def test_complete_below_the_hold_captures_that_amount_once(held_client, db, stripe, admin):
    body = await booked(held_client, stripe)

    first = await complete(held_client, admin, body["job_id"], final_amount_cents=9900)
    again = await complete(held_client, admin, body["job_id"], final_amount_cents=9900)

    assert first.status_code == 200, first.text
    view = first.json()
    assert view["state"] == "paid"
    assert (view["order"]["status"], view["order"]["amount_paid_cents"]) == ("paid", 9900)
    assert view["order"]["amount_remaining_cents"] == 9900
    assert (view["job"]["status"], view["capture"]["status"]) == ("completed", "succeeded")
    assert again.status_code == 200
    assert again.json()["order"] == view["order"]
    [sent] = captures_sent(stripe)
    assert sent.params["amount_to_capture"] == "9900"
    assert sent.idempotency_key == f"h2s-capture-{body['order_id']}"
    session = stripe.get_session(body["pay"]["session_id"])
    intent = stripe.get_payment_intent(session["payment_intent"])
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 9900)
    assert await states(db, body["order_id"]) == ("paid", "paid", "completed")


async def test_complete_without_an_amount_captures_the_whole_hold(held_client, stripe, admin):
    body = await booked(held_client, stripe)

    answer = await complete(held_client, admin, body["job_id"], note="both mounts done")

    assert answer.status_code == 200, answer.text
    assert answer.json()["order"]["amount_paid_cents"] == TOTAL
    assert answer.json()["capture"]["note"] == "both mounts done"


async def test_more_than_the_hold_is_refused_and_nothing_is_written(held_client, db, stripe, admin):
    body = await booked(held_client, stripe)

    answer = await complete(held_client, admin, body["job_id"], final_amount_cents=TOTAL + 1)

    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "amount_exceeds_authorization"
    assert await states(db, body["order_id"]) == ("authorized", "authorized", "dispatchable")
    assert await db.fetchval("select count(*) from h2s_captures") == 0
    assert captures_sent(stripe) == []


async def test_twenty_completes_at_once_capture_once(held_client, db, stripe, admin):
    body = await booked(held_client, stripe)

    answers = await asyncio.gather(
        *(complete(held_client, admin, body["job_id"], final_amount_cents=12000) for _ in range(20))
    )

    assert {a.status_code for a in answers} <= {200, 202}
    assert len(captures_sent(stripe)) == 1
    assert await db.fetchval("select count(*) from h2s_captures") == 1
    assert await states(db, body["order_id"]) == ("paid", "paid", "completed")


async def test_a_complete_racing_a_cancel_one_wins(held_client, db, stripe, admin):
    body = await booked(held_client, stripe)

    done, cancelled = await asyncio.gather(
        complete(held_client, admin, body["job_id"]),
        held_client.post(
            f"/api/orders/{body['order_id']}/cancel",
            json={"reason": "requested_by_customer"},
            headers=admin,
        ),
    )

    statuses = sorted([done.status_code, cancelled.status_code])
    assert statuses == [200, 409], (done.text, cancelled.text)
    loser = done if done.status_code == 409 else cancelled
    assert loser.json()["error"]["code"] in ("not_completable", "not_cancellable")
    session = stripe.get_session(body["pay"]["session_id"])
    intent = stripe.get_payment_intent(session["payment_intent"])
    if done.status_code == 200:
        assert intent["status"] == "succeeded"
        assert await states(db, body["order_id"]) == ("paid", "paid", "completed")
    else:
        assert intent["status"] == "canceled"
        assert await states(db, body["order_id"]) == ("cancelled", "cancelled", "cancelled")


async def test_cancelling_a_held_order_releases_the_hold(held_client, db, stripe, admin):
    body = await booked(held_client, stripe)

    answer = await held_client.post(
        f"/api/orders/{body['order_id']}/cancel",
        json={"reason": "requested_by_customer"},
        headers=admin,
    )
    late = await complete(held_client, admin, body["job_id"])

    assert answer.status_code == 200, answer.text
    assert answer.json()["refund"] is None
    assert await states(db, body["order_id"]) == ("cancelled", "cancelled", "cancelled")
    session = stripe.get_session(body["pay"]["session_id"])
    intent = stripe.get_payment_intent(session["payment_intent"])
    assert (intent["status"], intent["cancellation_reason"]) == (
        "canceled",
        "requested_by_customer",
    )
    assert stripe.find_requests("POST /v1/refunds") == []
    assert late.status_code == 409
    assert late.json()["error"] == {
        "code": "not_completable",
        "message": "the job's order holds no payment to capture in state cancelled",
        "state": "cancelled",
    }


async def test_a_lapsed_hold_expires_the_order_and_flags_the_job(held_client, db, stripe, admin):
    body = await booked(held_client, stripe)
    session = stripe.get_session(body["pay"]["session_id"])

    stripe.lapse_hold(session["payment_intent"])
    [event] = [e for e in stripe.events if e["type"] == "payment_intent.canceled"]
    applied = await deliver(held_client, event)
    again = await deliver(held_client, event)
    late = await complete(held_client, admin, body["job_id"])

    assert applied["result"] == "authorization_expired"
    assert again["duplicate"] is True
    assert await states(db, body["order_id"]) == (
        "authorization_expired",
        "authorization_expired",
        "dispatchable",
    )
    flag = await db.fetchval(
        "select payment_flag from h2s_dispatch_jobs where job_id = $1", uuid.UUID(body["job_id"])
    )
    assert flag == "authorization_expired"
    assert late.status_code == 409
    jobs = await held_client.get(
        "/api/portal/jobs", params={"order_id": body["order_id"]}, headers=admin
    )
    assert jobs.json()["jobs"][0]["payment_flag"] == "authorization_expired"


async def test_an_idempotency_key_reused_with_another_amount_is_refused(held_client, stripe, admin):
    body = await booked(held_client, stripe)
    key = {"Idempotency-Key": "dispatch-job-1"}

    first = await complete(held_client, admin, body["job_id"], final_amount_cents=9000, headers=key)
    same = await complete(held_client, admin, body["job_id"], final_amount_cents=9000, headers=key)
    other = await complete(held_client, admin, body["job_id"], final_amount_cents=8000, headers=key)

    assert first.status_code == 200
    assert same.status_code == 200
    assert same.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(captures_sent(stripe)) == 1


async def test_complete_needs_the_dispatch_scope(held_client, stripe, admin):
    body = await booked(held_client, stripe)
    made = await held_client.post(
        "/api/keys", json={"name": "crm", "scopes": ["operate", "read"]}, headers=admin
    )
    dispatcher = await held_client.post(
        "/api/keys", json={"name": "dispatch", "scopes": ["dispatch"]}, headers=admin
    )
    operate = {"Authorization": f"Bearer {made.json()['key']}"}
    dispatch = {"Authorization": f"Bearer {dispatcher.json()['key']}"}

    refused = await complete(held_client, operate, body["job_id"])
    missing = await complete(held_client, dispatch, str(uuid.uuid4()))
    done = await complete(held_client, dispatch, body["job_id"])

    assert refused.status_code == 403
    assert missing.status_code == 404
    assert done.status_code == 200, done.text
    assert done.json()["capture"]["actor"] == "dispatch"


async def test_the_default_policy_charges_at_booking_and_complete_moves_no_money(
    client, db, stripe, admin
):
    body = await booked(client, stripe)

    done = await complete(client, admin, body["job_id"])

    [create] = stripe.find_requests("POST /v1/checkout/sessions")
    assert "capture_method" not in create.params["payment_intent_data"]
    assert done.status_code == 200, done.text
    assert done.json()["capture_policy"] == "at_booking"
    assert await states(db, body["order_id"]) == ("paid", "paid", "completed")
    assert stripe.find_requests(CAPTURES) == []


async def test_the_policy_of_an_order_is_the_one_it_began_with(
    held_client, client, db, stripe, admin
):
    # Begun under on_completion, paid and completed through a service that now runs
    # at_booking: still a hold, captured on completion.
    answer = await held_client.post("/api/checkout", json=checkout_body())
    body = answer.json()
    session = stripe.complete_session(body["pay"]["session_id"])
    await deliver(client, stripe_event("checkout.session.completed", session))

    done = await complete(client, admin, body["job_id"], final_amount_cents=5000)

    assert done.status_code == 200, done.text
    assert done.json()["order"]["amount_paid_cents"] == 5000
    assert len(captures_sent(stripe)) == 1


async def events_of(db, order_id: str) -> list[tuple[str, str, str | None]]:
    rows = await db.fetch(
        "select type, body->'data'->'order'->>'status' as status,"
        " body->'data'->'job'->>'status' as job from h2s_events"
        " where order_id = $1 order by sequence",
        order_id,
    )
    return [(r["type"], r["status"], r["job"]) for r in rows]


async def subscribed(client, admin) -> None:
    answer = await client.post(
        "/api/event-endpoints", json={"url": "http://127.0.0.1:9/h2s"}, headers=admin
    )
    assert answer.status_code == 201, answer.text


async def test_subscribers_hear_authorized_completed_captured_and_refunded_in_part(
    held_client, db, stripe, admin
):
    await subscribed(held_client, admin)
    body = await booked(held_client, stripe)
    await complete(held_client, admin, body["job_id"], final_amount_cents=10000)
    part = await held_client.post(
        f"/api/orders/{body['order_id']}/refunds",
        json={"amount_cents": 2000, "reason": "requested_by_customer"},
        headers=admin,
    )
    assert part.status_code == 200, part.text

    assert await events_of(db, body["order_id"]) == [
        ("order.created", "pending_payment", "queued"),
        ("order.authorized", "authorized", "dispatchable"),
        ("job.completed", "authorized", "completed"),
        ("order.captured", "paid", "completed"),
        ("order.refunded_partially", "partially_refunded", "completed"),
    ]


async def test_subscribers_hear_a_lapsed_hold(held_client, db, stripe, admin):
    await subscribed(held_client, admin)
    body = await booked(held_client, stripe)
    session = stripe.get_session(body["pay"]["session_id"])
    stripe.lapse_hold(session["payment_intent"])
    [event] = [e for e in stripe.events if e["type"] == "payment_intent.canceled"]
    await deliver(held_client, event)

    assert [e[0] for e in await events_of(db, body["order_id"])] == [
        "order.created",
        "order.authorized",
        "order.authorization_expired",
    ]


async def test_the_reconciler_finds_a_hold_whose_event_never_came(held_client, db, stripe, clock):
    answer = await held_client.post("/api/checkout", json=checkout_body())
    body = answer.json()
    stripe.complete_session(body["pay"]["session_id"])  # no webhook reaches us
    clock.advance(hours=2)  # past the session's expiry and the reconciler's grace

    report = await held_client.app.state.reconciler.run_once()

    assert report.actions["session_authorized"] == 1
    assert await states(db, body["order_id"]) == ("authorized", "authorized", "dispatchable")


async def test_the_reconciler_lapses_a_hold_stripe_let_go_without_telling_us(
    held_client, db, stripe, clock
):
    body = await booked(held_client, stripe)
    session = stripe.get_session(body["pay"]["session_id"])
    stripe.lapse_hold(session["payment_intent"])  # its event never reaches us
    reconciler = held_client.app.state.reconciler
    assert "hold_authorization_expired" not in (await reconciler.run_once()).actions

    clock.advance(days=8)  # past the hold's capture date
    report = await reconciler.run_once()

    assert report.actions["hold_authorization_expired"] == 1
    assert (await states(db, body["order_id"]))[0] == "authorization_expired"


async def test_a_hold_for_an_order_already_cancelled_is_released(held_client, db, stripe, admin):
    answer = await held_client.post("/api/checkout", json=checkout_body())
    body = answer.json()
    # Held on the hosted page just before an operator cancels; the event comes after.
    session = stripe.complete_session(body["pay"]["session_id"])
    cancelled = await held_client.post(
        f"/api/orders/{body['order_id']}/cancel", json={"reason": "other"}, headers=admin
    )
    assert cancelled.json()["state"] == "cancelled"

    result = await deliver(held_client, stripe_event("checkout.session.completed", session))

    assert result["result"] == "already_cancelled"
    intent = stripe.get_payment_intent(session["payment_intent"])
    assert (intent["status"], intent["cancellation_reason"]) == ("canceled", "abandoned")
    assert captures_sent(stripe) == []


async def test_a_cancel_after_the_job_is_done_is_refused_and_nothing_is_refunded(
    held_client, db, stripe, admin
):
    body = await booked(held_client, stripe)
    await complete(held_client, admin, body["job_id"], final_amount_cents=9000)

    late = await held_client.post(
        f"/api/orders/{body['order_id']}/cancel", json={"reason": "other"}, headers=admin
    )

    assert late.status_code == 409
    assert late.json()["error"]["code"] == "not_cancellable"
    assert late.json()["error"]["state"] == "paid"
    assert stripe.find_requests("POST /v1/refunds") == []
    assert await states(db, body["order_id"]) == ("paid", "paid", "completed")


async def test_an_order_whose_hold_lapsed_can_be_cancelled(held_client, db, stripe, admin):
    body = await booked(held_client, stripe)
    session = stripe.get_session(body["pay"]["session_id"])
    stripe.lapse_hold(session["payment_intent"])
    [event] = [e for e in stripe.events if e["type"] == "payment_intent.canceled"]
    await deliver(held_client, event)

    answer = await held_client.post(
        f"/api/orders/{body['order_id']}/cancel", json={"reason": "other"}, headers=admin
    )

    assert answer.status_code == 200, answer.text
    assert await states(db, body["order_id"]) == ("cancelled", "cancelled", "cancelled")
    assert stripe.find_requests("POST /v1/payment_intents/*/cancel") == []
