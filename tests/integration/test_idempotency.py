"""Exactly once under retries: derived keys, client Idempotency-Keys, conflicts, resumption."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from h2s_checkout.flows.reaper import reap_keys
from support import app_client, checkout_body, command_for, delta, scrape

CREATE = "POST /v1/checkout/sessions"
TWO_LINES = [{"sku": "tv-mount", "quantity": 2}, {"sku": "smart-lock", "quantity": 1}]


async def counts(db) -> tuple[int, int, int]:
    return (
        await db.fetchval("select count(*) from h2s_checkouts"),
        await db.fetchval("select count(*) from h2s_orders"),
        await db.fetchval("select count(*) from h2s_dispatch_jobs"),
    )


async def events(client, admin, trace_id) -> list[str]:
    timeline = (await client.get(f"/api/checkouts/{trace_id}/timeline", headers=admin)).json()
    return [s["event"] for s in timeline["steps"]]


async def test_same_customer_same_cart_replays_the_first_answer(client, db, stripe, admin):
    first = await client.post("/api/checkout", json=checkout_body(items=TWO_LINES))
    # Same customer (case, whitespace) and same cart (other order, a line split in two).
    again = await client.post(
        "/api/checkout",
        json=checkout_body(
            email="  ANA@example.com ",
            items=[
                {"sku": "smart-lock", "quantity": 1},
                {"sku": "tv-mount", "quantity": 1},
                {"sku": "tv-mount", "quantity": 1},
            ],
        ),
    )

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await counts(db) == (1, 1, 1)
    assert len(stripe.sessions) == 1
    assert "checkout.replayed" in await events(client, admin, first.json()["checkout_trace_id"])


async def test_a_retry_across_the_old_five_minute_bucket_edge_is_the_same_checkout(
    client, db, clock
):
    # Half a second before a 5-minute boundary: the seed's time-bucket key would change.
    epoch = clock.now.timestamp()
    clock.now = datetime.fromtimestamp((epoch // 300 + 1) * 300 - 0.5, UTC)

    first = await client.post("/api/checkout", json=checkout_body())
    clock.advance(seconds=1)
    retry = await client.post("/api/checkout", json=checkout_body())

    assert retry.json()["order_id"] == first.json()["order_id"]
    assert await counts(db) == (1, 1, 1)


async def test_after_the_window_the_same_cart_is_a_new_checkout(client, db, clock):
    first = await client.post("/api/checkout", json=checkout_body())
    clock.advance(minutes=4, seconds=59)
    inside = await client.post("/api/checkout", json=checkout_body())
    clock.advance(seconds=2)  # 5 min 1 s after the first request
    after = await client.post("/api/checkout", json=checkout_body())

    assert inside.json()["order_id"] == first.json()["order_id"]
    assert after.status_code == 201
    assert after.json()["order_id"] != first.json()["order_id"]
    assert await counts(db) == (2, 2, 2)


async def test_a_different_cart_or_customer_is_a_new_checkout(client, db):
    await client.post("/api/checkout", json=checkout_body())
    await client.post("/api/checkout", json=checkout_body(items=TWO_LINES))
    await client.post("/api/checkout", json=checkout_body(email="bo@example.com"))
    assert await counts(db) == (3, 3, 3)


async def test_a_cleaned_checkout_does_not_block_a_new_attempt(client, db, stripe, clock):
    stripe.faults.add("status", CREATE, status=400, times=1)
    failed = await client.post("/api/checkout", json=checkout_body())
    # Rows carry the flow's clock, which the test moves: created_at orders them below.
    clock.advance(seconds=1)
    retry = await client.post("/api/checkout", json=checkout_body())

    assert failed.status_code == 502
    assert retry.status_code == 201
    assert retry.json()["checkout_trace_id"] != failed.json()["checkout_trace_id"]
    states = [
        r["state"] for r in await db.fetch("select state from h2s_checkouts order by created_at")
    ]
    assert states == ["cleaned", "session_created"]


async def test_a_booking_cancelled_a_moment_ago_is_booked_anew_on_the_same_worker(
    client, db, stripe, admin, clock
):
    # The worker that answered the first request expects the second to be a replay (it
    # asks PostgreSQL for one without building a checkout); the booking was cancelled in
    # between, so the answer is a new checkout, as on a worker that never saw the key.
    first = await client.post("/api/checkout", json=checkout_body())
    cancelled = await client.post(
        f"/api/orders/{first.json()['order_id']}/cancel",
        json={"reason": "requested_by_customer"},
        headers=admin,
    )
    assert cancelled.status_code == 200
    clock.advance(seconds=1)
    again = await client.post("/api/checkout", json=checkout_body())
    replay = await client.post("/api/checkout", json=checkout_body())

    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert again.json()["order_id"] != first.json()["order_id"]
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == again.json()
    assert await counts(db) == (2, 2, 2)
    assert len(stripe.sessions) == 2


async def test_a_replay_is_the_same_answer_on_the_worker_that_made_it_and_on_another(
    client, db, settings, clock
):
    first = await client.post("/api/checkout", json=checkout_body(items=TWO_LINES))
    async with app_client(settings, clock) as other:
        elsewhere = await other.post("/api/checkout", json=checkout_body(items=TWO_LINES))
    here = await client.post("/api/checkout", json=checkout_body(items=TWO_LINES))

    assert first.status_code == elsewhere.status_code == here.status_code == 201
    assert elsewhere.json() == here.json() == first.json()
    assert elsewhere.headers["idempotent-replayed"] == here.headers["idempotent-replayed"]
    assert await counts(db) == (1, 1, 1)
    replays = await db.fetchval(
        "select count(*) from h2s_checkout_traces where event = 'checkout.replayed'"
    )
    assert replays == 2


async def test_client_key_replays_with_the_same_status(client, db, stripe):
    headers = {"Idempotency-Key": "order-7f3a"}
    first = await client.post("/api/checkout", json=checkout_body(), headers=headers)
    again = await client.post("/api/checkout", json=checkout_body(), headers=headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await counts(db) == (1, 1, 1)


async def test_client_key_with_another_body_is_422_and_writes_nothing(client, db, stripe):
    headers = {"Idempotency-Key": "order-7f3a"}
    await client.post("/api/checkout", json=checkout_body(), headers=headers)
    before = await counts(db)
    traces = await db.fetchval("select count(*) from h2s_checkout_traces")

    other = await client.post("/api/checkout", json=checkout_body(items=TWO_LINES), headers=headers)

    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert await counts(db) == before
    assert await db.fetchval("select count(*) from h2s_checkout_traces") == traces
    assert len(stripe.sessions) == 1


async def test_client_key_takes_precedence_over_the_derived_key(client, db):
    one = await client.post(
        "/api/checkout", json=checkout_body(), headers={"Idempotency-Key": "a1"}
    )
    two = await client.post(
        "/api/checkout", json=checkout_body(), headers={"Idempotency-Key": "b2"}
    )
    assert one.json()["order_id"] != two.json()["order_id"]
    assert await counts(db) == (2, 2, 2)


async def test_a_request_while_the_key_is_in_flight_gets_409(client, db, stripe, admin):
    stripe.faults.add("latency", CREATE, seconds=0.8, times=1)
    headers = {"Idempotency-Key": "in-flight-1"}

    first, second = await asyncio.gather(
        client.post("/api/checkout", json=checkout_body(), headers=headers),
        _after(0.3, client.post("/api/checkout", json=checkout_body(), headers=headers)),
    )

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "checkout_in_progress"
    assert second.json()["checkout_trace_id"] == first.json()["checkout_trace_id"]
    assert int(second.headers["retry-after"]) >= 1
    assert await counts(db) == (1, 1, 1)
    assert "checkout.conflict" in await events(client, admin, first.json()["checkout_trace_id"])
    # Once it finished, the same request replays the answer.
    third = await client.post("/api/checkout", json=checkout_body(), headers=headers)
    assert third.json() == first.json()


async def _after(seconds: float, awaitable):
    await asyncio.sleep(seconds)
    return await awaitable


async def test_an_attempt_that_died_mid_checkout_is_resumed_after_its_lease(
    client, db, stripe, clock, admin
):
    # Stripe makes the session but its answer never comes back; then the attempt dies
    # (cancelled, as a killed process would stop) before it can link or clean anything.
    stripe.faults.add("timeout", CREATE, seconds=30, processed=True)
    flow = client.app.state.checkout_flow
    body = checkout_body()
    command = command_for(body)
    attempt = asyncio.create_task(flow.begin(command))
    while not stripe.find_requests(CREATE):
        await asyncio.sleep(0.02)
    attempt.cancel()
    stripe.faults.clear()
    checkout = await db.fetchrow("select * from h2s_checkouts")
    assert checkout["state"] == "job_queued"

    early = await client.post("/api/checkout", json=body)
    assert early.status_code == 409  # the dead attempt's lease still holds

    clock.advance(seconds=91)
    retry = await client.post("/api/checkout", json=body)

    assert retry.status_code == 201, retry.text
    assert retry.json()["checkout_trace_id"] == str(checkout["checkout_id"])
    assert await counts(db) == (1, 1, 1)
    assert len(stripe.sessions) == 1
    keys = {r.idempotency_key for r in stripe.find_requests(CREATE)}
    assert len(keys) == 1
    assert "checkout.resumed" in await events(client, admin, retry.json()["checkout_trace_id"])


async def test_keys_are_kept_for_retention_then_reaped(client, db, clock):
    headers = {"Idempotency-Key": "reap-me"}
    first = await client.post("/api/checkout", json=checkout_body(), headers=headers)
    pool = client.app.state.db_pool

    assert await reap_keys(pool, timedelta(hours=72), lambda: clock.now + timedelta(hours=71)) == 0
    assert await reap_keys(pool, timedelta(hours=72), lambda: clock.now + timedelta(hours=73)) == 1

    again = await client.post("/api/checkout", json=checkout_body(), headers=headers)
    assert again.status_code == 201
    assert again.json()["checkout_trace_id"] != first.json()["checkout_trace_id"]
    # The reaped checkout itself is kept, only its key is forgotten.
    assert (
        await db.fetchval(
            "select count(*) from h2s_checkouts where checkout_id = $1",
            uuid.UUID(first.json()["checkout_trace_id"]),
        )
        == 1
    )


async def test_keys_of_paid_and_expired_checkouts_are_reaped_too(client, db, clock, stripe):
    paid = await client.post(
        "/api/checkout", json=checkout_body(), headers={"Idempotency-Key": "paid-key"}
    )
    expired = await client.post(
        "/api/checkout",
        json=checkout_body(email="bo@example.com"),
        headers={"Idempotency-Key": "expired-key"},
    )
    await db.execute(
        "update h2s_checkouts set state = 'paid' where checkout_id = $1",
        uuid.UUID(paid.json()["checkout_trace_id"]),
    )
    await db.execute(
        "update h2s_checkouts set state = 'expired' where checkout_id = $1",
        uuid.UUID(expired.json()["checkout_trace_id"]),
    )
    pool = client.app.state.db_pool
    assert await reap_keys(pool, timedelta(hours=72), lambda: clock.now + timedelta(hours=73)) == 2


async def test_the_same_cart_at_a_second_address_is_a_second_booking(client, db, stripe):
    """A landlord books a smart lock for each of two homes, a minute apart."""
    lock = [{"sku": "smart-lock", "quantity": 1}]
    first = await client.post("/api/checkout", json=checkout_body(items=lock))
    oak_avenue = {
        "line1": "77 Oak Ave",
        "city": "Austin",
        "state": "TX",
        "postal_code": "78702",
        "country": "US",
    }
    second = await client.post("/api/checkout", json=checkout_body(items=lock, address=oak_avenue))

    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert second.json()["order_id"] != first.json()["order_id"]
    assert await counts(db) == (2, 2, 2)
    assert len(stripe.sessions) == 2
    where = await db.fetch(
        "select customer->'address'->>'line1' as line1 from h2s_orders order by created_at"
    )
    assert [r["line1"] for r in where] == ["1 Main St", "77 Oak Ave"]


async def test_the_same_address_written_differently_is_the_same_booking(client, db):
    first = await client.post("/api/checkout", json=checkout_body())
    messy = {
        "line1": "  1  MAIN st ",
        "city": "AUSTIN",
        "state": "tx",
        "postal_code": "78701 ",
        "country": "US",
    }
    again = await client.post("/api/checkout", json=checkout_body(address=messy))

    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await counts(db) == (1, 1, 1)


async def test_another_flat_at_the_same_street_address_is_another_booking(client, db):
    await client.post("/api/checkout", json=checkout_body())
    flat = {
        "line1": "1 Main St",
        "line2": "Apt 2",
        "city": "Austin",
        "state": "TX",
        "postal_code": "78701",
        "country": "US",
    }
    other = await client.post("/api/checkout", json=checkout_body(address=flat))

    assert other.status_code == 201
    assert "idempotent-replayed" not in other.headers
    assert await counts(db) == (2, 2, 2)


async def test_replays_that_arrive_together_share_a_call_and_keep_their_own_answers(
    client, db, stripe, admin
):
    # A landlord books the same service at two homes, and a storefront sends a client key;
    # then each is retried many times at once, with the key also reused for another body.
    cabin = {"line1": "9 Lake Rd", "city": "Marble Falls", "state": "TX",
             "postal_code": "78654", "country": "US"}  # fmt: skip
    home_body, cabin_body = checkout_body(), checkout_body(address=cabin)
    keyed_body, key = checkout_body(email="bo@example.com"), {"Idempotency-Key": "k-7"}
    first = {
        "home": await client.post("/api/checkout", json=home_body),
        "cabin": await client.post("/api/checkout", json=cabin_body),
        "keyed": await client.post("/api/checkout", json=keyed_body, headers=key),
    }
    assert len({a.json()["order_id"] for a in first.values()}) == 3
    sends = [
        ("home", home_body, None),
        ("cabin", cabin_body, None),
        ("keyed", keyed_body, key),
        ("reused", checkout_body(email="cy@example.com"), key),
    ] * 8
    before = await scrape(client)

    answers = await asyncio.gather(
        *(client.post("/api/checkout", json=body, headers=headers) for _, body, headers in sends)
    )

    after = await scrape(client)
    for (name, _, _), answer in zip(sends, answers, strict=True):
        if name == "reused":
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["code"] == "idempotency_key_reused"
        else:
            assert answer.status_code == 201, answer.text
            assert answer.headers["idempotent-replayed"] == "true"
            assert answer.json() == first[name].json()
    assert await counts(db) == (3, 3, 3)
    assert len(stripe.sessions) == 3
    for name in ("home", "cabin", "keyed"):
        steps = await events(client, admin, first[name].json()["checkout_trace_id"])
        assert steps.count("checkout.replayed") == 8
    # All 32 went through the replay call, in fewer calls than requests: those that arrive
    # while a call is being made wait and go together in it or the next.
    replays = delta(before, after, "h2s_replay_batch_size_sum")
    calls = delta(before, after, "h2s_replay_batch_size_count")
    assert replays == 32
    assert 1 <= calls < 32
