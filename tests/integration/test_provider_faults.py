"""Every Stripe fault ends the checkout cleaned: order and job cancelled, no open session."""

from __future__ import annotations

import pytest

from support import checkout_body

CREATE = "POST /v1/checkout/sessions"

FAULTS = {
    "http_500": {"kind": "status", "status": 500},
    "http_429": {"kind": "status", "status": 429, "retry_after": 0},
    "http_400": {
        "kind": "status",
        "status": 400,
        "error": {"type": "invalid_request_error", "code": "parameter_invalid", "message": "bad"},
    },
    "timeout": {"kind": "timeout", "seconds": 3},
    "dropped_connection": {"kind": "drop"},
    "timeout_after_processing": {"kind": "timeout", "seconds": 3, "processed": True},
    "dropped_after_processing": {"kind": "drop", "processed": True},
}


async def assert_cleaned(db, stripe, body):
    checkout = await db.fetchrow("select * from h2s_checkouts")
    assert checkout["state"] == "cleaned"
    assert str(checkout["checkout_id"]) == body["checkout_trace_id"]
    order = await db.fetchrow("select * from h2s_orders")
    job = await db.fetchrow("select * from h2s_dispatch_jobs")
    assert (order["status"], job["status"]) == ("cancelled", "cancelled")
    assert [s["id"] for s in stripe.sessions if s["status"] == "open"] == []
    transitions = await db.fetch(
        "select from_state, to_state from h2s_checkout_traces"
        " where kind = 'transition' order by at, seq"
    )
    assert [tuple(t) for t in transitions][-2:] == [("job_queued", "failed"), ("failed", "cleaned")]


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_a_failing_session_create_is_cleaned_up(client, db, stripe, fault):
    options = dict(fault)
    kind = options.pop("kind")
    # The fault hits the create and its one retry (settings: stripe_max_retries=1); the
    # settle replay then gets through, so a session Stripe did create is found and expired.
    stripe.faults.add(kind, CREATE, times=2, **options)

    answer = await client.post("/api/checkout", json=checkout_body())

    assert answer.status_code == 502, answer.text
    body = answer.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "payment_provider_error"
    assert body["checkout_trace_id"]
    await assert_cleaned(db, stripe, body)
    failure = await db.fetchrow("select * from h2s_checkout_failures")
    assert failure["phase"] == "create_session"
    assert failure["provider_code"]
    if kind == "status":
        assert failure["http_status"] == options["status"]


async def test_a_transient_fault_is_retried_with_the_same_key(client, db, stripe):
    stripe.faults.add("status", CREATE, status=500, times=1)

    answer = await client.post("/api/checkout", json=checkout_body())

    assert answer.status_code == 201, answer.text
    creates = stripe.find_requests(CREATE)
    assert len(creates) == 2
    assert creates[0].idempotency_key == creates[1].idempotency_key
    assert len(stripe.sessions) == 1


async def test_a_session_created_before_a_later_failure_is_expired(client, db, stripe):
    # Fault injected at the database: linking the session onto the order fails.
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
    try:
        answer = await client.post("/api/checkout", json=checkout_body())
    finally:
        await db.execute(
            "drop trigger h2s_test_refuse_link on h2s_orders; drop function h2s_test_refuse_link()"
        )

    assert answer.status_code == 500
    body = answer.json()
    assert body["error"]["code"] == "internal_error"
    assert [s["status"] for s in stripe.sessions] == ["expired"]
    await assert_cleaned(db, stripe, body)
    failure = await db.fetchrow("select * from h2s_checkout_failures")
    assert failure["phase"] == "link_session"


async def test_a_failing_job_insert_makes_no_stripe_call(client, db, stripe):
    await db.execute(
        """
        create or replace function h2s_test_refuse_job() returns trigger language plpgsql as $$
        begin raise exception 'injected job failure'; end $$;
        create trigger h2s_test_refuse_job before insert on h2s_dispatch_jobs
            for each row execute function h2s_test_refuse_job();
        """
    )
    try:
        answer = await client.post("/api/checkout", json=checkout_body())
    finally:
        await db.execute(
            "drop trigger h2s_test_refuse_job on h2s_dispatch_jobs;"
            " drop function h2s_test_refuse_job()"
        )

    assert answer.status_code == 500
    assert answer.json()["checkout_trace_id"]
    assert stripe.requests == []
    for table in (
        "h2s_checkouts",
        "h2s_orders",
        "h2s_dispatch_jobs",
        "h2s_recipients",
        "h2s_checkout_traces",
    ):
        assert await db.fetchval(f"select count(*) from {table}") == 0, table
