"""`--prefill N` writes checkouts the service reads as its own: their timelines, the portal,
the doctor and the reconciler see finished checkouts, consistent row by row.

The prefill runs here with the foreign-key triggers on, so PostgreSQL itself checks every
reference the bench's run (triggers off) relies on.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from h2s_bench import prefill
from h2s_checkout.bootstrap import open_services
from h2s_checkout.flows.doctor import run_checks
from h2s_checkout.settings import Settings
from h2s_checkout.store.migrate import apply_migrations

CHECKOUTS = 600


@pytest.fixture
async def filled(db: asyncpg.Connection, database_url: str) -> prefill.Prefilled:
    return await prefill.prefill(database_url, CHECKOUTS, "t", check_foreign_keys=True)


async def one(db: asyncpg.Connection, state: str) -> asyncpg.Record:
    row = await db.fetchrow(
        "select * from h2s_checkouts where state = $1 order by created_at desc limit 1", state
    )
    assert row is not None, f"no prefilled checkout in {state}"
    return row


async def test_rows_per_table_and_outcomes(
    db: asyncpg.Connection, filled: prefill.Prefilled
) -> None:
    total = CHECKOUTS + filled.open_sessions
    assert filled.foreign_keys_checked
    assert filled.rows["h2s_checkouts"] == total
    assert filled.rows["h2s_orders"] == total
    assert filled.rows["h2s_dispatch_jobs"] == total
    states = dict(await db.fetch("select state, count(*) from h2s_checkouts group by state"))
    assert states == {k: v for k, v in filled.outcomes.items() if v}
    assert states["session_created"] == filled.open_sessions
    assert states["paid"] > states["expired"] > states.get("cleaned", 0)
    # One webhook event per paid or expired checkout, one failure per cleaned one.
    assert filled.rows["h2s_webhook_events"] == states["paid"] + states["expired"]
    assert filled.rows["h2s_checkout_failures"] == states.get("cleaned", 0)
    # Customers come back: fewer recipients than orders.
    assert filled.rows["h2s_recipients"] < CHECKOUTS / 2
    span = await db.fetchval("select max(created_at) - min(created_at) from h2s_checkouts")
    assert span.days >= 85
    assert await db.fetchval("select to_regclass('h2s_bench_prefill_plan')") is None


async def test_a_paid_checkout_reads_as_the_service_wrote_it(
    client: httpx.AsyncClient, db: asyncpg.Connection, filled: prefill.Prefilled, admin: dict
) -> None:
    paid = await one(db, "paid")
    timeline = await client.get(f"/api/checkouts/{paid['checkout_id']}/timeline", headers=admin)
    assert timeline.status_code == 200
    body: dict[str, Any] = timeline.json()
    moves = [(s["from_state"], s["to_state"]) for s in body["steps"] if s["kind"] == "transition"]
    assert moves == [
        ("pending_payment", "job_queued"),
        ("job_queued", "session_created"),
        ("session_created", "paid"),
    ]
    events = {s["event"] for s in body["steps"]}
    assert {"checkout.received", "order_and_job.created", "stripe.session_created"} <= events
    by_order = await client.get(f"/api/orders/{paid['order_id']}/timeline", headers=admin)
    assert by_order.json()["checkout_trace_id"] == str(paid["checkout_id"])

    jobs = await client.get(f"/api/portal/jobs?order_id={paid['order_id']}", headers=admin)
    assert jobs.status_code == 200
    [job] = jobs.json()["jobs"]
    assert (job["status"], job["order_status"]) == ("dispatchable", "paid")
    assert job["job_id"] == str(paid["job_id"])


async def test_a_cleaned_checkout_has_its_failure_and_cancelled_rows(
    client: httpx.AsyncClient, db: asyncpg.Connection, filled: prefill.Prefilled, admin: dict
) -> None:
    if not filled.outcomes.get("cleaned"):
        pytest.skip("no cleaned checkout drawn this time")
    cleaned = await one(db, "cleaned")
    body = (
        await client.get(f"/api/checkouts/{cleaned['checkout_id']}/timeline", headers=admin)
    ).json()
    assert [s["to_state"] for s in body["steps"] if s["kind"] == "transition"] == [
        "job_queued",
        "failed",
        "cleaned",
    ]
    assert [f["error_code"] for f in body["failures"]] == ["payment_provider_error"]
    statuses = await db.fetchrow(
        "select o.status as order_status, j.status as job_status from h2s_orders o "
        "join h2s_dispatch_jobs j on j.order_id = o.order_id where o.checkout_id = $1",
        cleaned["checkout_id"],
    )
    assert dict(statuses) == {"order_status": "cancelled", "job_status": "cancelled"}


async def test_only_the_open_sessions_are_queued_in_the_portal(
    client: httpx.AsyncClient, db: asyncpg.Connection, filled: prefill.Prefilled, admin: dict
) -> None:
    queued = (await client.get("/api/portal/jobs?status=queued", headers=admin)).json()["jobs"]
    assert len(queued) == filled.open_sessions
    assert {j["order_status"] for j in queued} == {"pending_payment"}


async def test_the_doctor_and_the_reconciler_find_nothing_to_do(
    db: asyncpg.Connection, filled: prefill.Prefilled, settings: Settings, stripe: Any
) -> None:
    results = await run_checks(db, None)
    assert {r.name: r.count for r in results if r.count} == {}
    async with open_services(settings) as services:
        report = await services.reconciler.run_once()
    assert not report.actions


async def test_a_schema_the_prefill_does_not_know_stops_it_with_its_name(
    db: asyncpg.Connection, database_url: str
) -> None:
    name = f"prefill_drift_{uuid.uuid4().hex[:8]}"
    await db.execute(f'create database "{name}"')
    dsn = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    try:
        apply_migrations(dsn)
        other = await asyncpg.connect(dsn)
        try:
            await other.execute("alter table h2s_orders add column region text not null")
        finally:
            await other.close()
        with pytest.raises(prefill.PrefillError, match=r"h2s_orders.*bench/prefill\.py"):
            await prefill.prefill(dsn, 20, "drift", check_foreign_keys=True)
    finally:
        await db.execute(f'drop database "{name}" with (force)')


def test_ranges_cover_every_checkout_once() -> None:
    assert prefill.ranges(10, 3) == [(1, 3), (4, 7), (8, 10)]
    assert prefill.ranges(1, 4) == [(1, 1)]
    covered = [i for lo, hi in prefill.ranges(1001, 2) for i in range(lo, hi + 1)]
    assert covered == list(range(1, 1002))
