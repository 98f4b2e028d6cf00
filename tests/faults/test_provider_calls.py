"""Faults on every Stripe call (create, retrieve, expire): invariants hold afterwards.

No order without a job, no open session on a cleaned order, every checkout final or
resumable; what could not be finished at once is finished by one reconcile pass.
"""

from __future__ import annotations

import time

import pytest

from support import checkout_body

CREATE = "POST /v1/checkout/sessions"
RETRIEVE = "GET /v1/checkout/sessions/*"
EXPIRE = "POST /v1/checkout/sessions/*/expire"

FAULTS = {
    "http_500": {"kind": "status", "status": 500},
    "http_429": {"kind": "status", "status": 429, "retry_after": 0},
    "timeout": {"kind": "timeout", "seconds": 3},
    "dropped": {"kind": "drop"},
}


async def assert_invariants(db, stripe) -> None:
    orphans = await db.fetchval(
        "select count(*) from h2s_orders o left join h2s_dispatch_jobs j using (order_id)"
        " where j.job_id is null"
    )
    assert orphans == 0
    states = {r["state"] for r in await db.fetch("select state from h2s_checkouts")}
    assert states <= {"session_created", "paid", "expired", "cleaned"}
    cleaned_orders = {
        r["order_id"]
        for r in await db.fetch("select order_id from h2s_checkouts where state = 'cleaned'")
    }
    open_on_cleaned = [
        s["id"]
        for s in stripe.sessions
        if s["status"] == "open" and s["client_reference_id"] in cleaned_orders
    ]
    assert open_on_cleaned == []
    assert await db.fetchval("select count(*) from h2s_checkouts where needs_settlement") == 0


async def refuse_linking(db) -> None:
    """A database fault in phase 3, so that cleanup must expire a real session."""
    await db.execute(
        """
        create or replace function h2s_test_refuse_link() returns trigger language plpgsql as $$
        begin
            if new.session_id is not null then raise exception 'injected link failure'; end if;
            return new;
        end $$;
        create trigger h2s_test_refuse_link before update on h2s_orders
            for each row execute function h2s_test_refuse_link();
        """
    )


async def allow_linking(db) -> None:
    await db.execute(
        "drop trigger if exists h2s_test_refuse_link on h2s_orders;"
        " drop function if exists h2s_test_refuse_link()"
    )


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_a_failing_expire_is_finished_by_the_reconciler(client, db, stripe, clock, fault):
    options = dict(fault)
    rule = stripe.faults.add(options.pop("kind"), EXPIRE, **options)
    await refuse_linking(db)
    try:
        answer = await client.post("/api/checkout", json=checkout_body())
    finally:
        await allow_linking(db)
    assert answer.status_code == 500
    checkout = await db.fetchrow("select * from h2s_checkouts")
    assert checkout["state"] == "cleaned"
    assert checkout["needs_settlement"] is True
    assert [s["status"] for s in stripe.sessions] == ["open"]  # the expire never landed

    stripe.faults.remove(rule.id)
    report = await client.app.state.reconciler.run_once()

    assert report.actions == {"settled": 1}
    assert [s["status"] for s in stripe.sessions] == ["expired"]
    await assert_invariants(db, stripe)


async def test_an_ambiguous_create_that_cannot_be_settled_is_settled_later(client, db, stripe):
    # Stripe makes the session, then every answer is lost: the checkout is cleaned, but
    # nobody can tell yet whether a session exists.
    rule = stripe.faults.add("timeout", CREATE, seconds=3, processed=True)
    answer = await client.post("/api/checkout", json=checkout_body())
    assert answer.status_code == 502
    assert await db.fetchval("select needs_settlement from h2s_checkouts") is True
    assert [s["status"] for s in stripe.sessions] == ["open"]

    stripe.faults.remove(rule.id)
    report = await client.app.state.reconciler.run_once()

    assert report.actions == {"settled": 1}
    assert [s["status"] for s in stripe.sessions] == ["expired"]
    await assert_invariants(db, stripe)


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_a_failing_retrieve_leaves_the_session_for_the_next_pass(
    client, db, stripe, clock, fault, admin
):
    body = (await client.post("/api/checkout", json=checkout_body())).json()
    options = dict(fault)
    rule = stripe.faults.add(options.pop("kind"), RETRIEVE, **options)

    view = await client.get(f"/api/checkouts/{body['checkout_trace_id']}", headers=admin)
    assert view.status_code == 200
    assert view.json()["provider_session"]["found"] is False
    clock.advance(minutes=63)
    first = await client.app.state.reconciler.run_once()
    assert sum(first.actions.values()) == 1
    assert next(iter(first.actions)).startswith("provider_failed")
    assert await db.fetchval("select state from h2s_checkouts") == "session_created"

    stripe.faults.remove(rule.id)
    second = await client.app.state.reconciler.run_once()
    assert second.actions == {"session_expired": 1}
    await assert_invariants(db, stripe)


async def test_429_is_retried_after_retry_after_with_the_same_key(client, db, stripe):
    stripe.faults.add("status", CREATE, status=429, retry_after=1, times=1)

    answer = await client.post("/api/checkout", json=checkout_body())

    assert answer.status_code == 201
    creates = stripe.find_requests(CREATE)
    assert len(creates) == 2
    assert creates[0].idempotency_key == creates[1].idempotency_key
    assert creates[1].received_at - creates[0].received_at >= 0.8  # Retry-After honoured
    await assert_invariants(db, stripe)


async def test_a_slow_answer_within_the_timeout_succeeds(client, db, stripe):
    stripe.faults.add("latency", CREATE, seconds=0.5)
    started = time.monotonic()
    answer = await client.post("/api/checkout", json=checkout_body())
    assert answer.status_code == 201
    assert time.monotonic() - started >= 0.5
    assert len(stripe.find_requests(CREATE)) == 1
