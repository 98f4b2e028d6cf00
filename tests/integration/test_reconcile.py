"""The reconciler finishes or cleans up what crashes left, and settles silent sessions."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta

from h2s_checkout.settings import EMULATOR_API_KEY
from h2s_checkout.store import reconcile as reconcile_sql
from support import checkout_body, command_for

CREATE = "POST /v1/checkout/sessions"


async def dead_attempt(client, stripe, *, processed: bool, email: str = "ana@example.com"):
    """A checkout whose process died in phase 2: job_queued, lease held, nothing else."""
    stripe.faults.add("timeout", CREATE, seconds=30, processed=processed)
    before = len(stripe.find_requests(CREATE))
    attempt = asyncio.create_task(
        client.app.state.checkout_flow.begin(command_for(checkout_body(email=email)))
    )
    while len(stripe.find_requests(CREATE)) == before:
        await asyncio.sleep(0.02)
    attempt.cancel()
    stripe.faults.clear()


async def state_of(db) -> list[str]:
    return [
        r["state"] for r in await db.fetch("select state from h2s_checkouts order by created_at")
    ]


async def test_a_stuck_checkout_is_finished_with_the_same_session(client, db, stripe, clock):
    await dead_attempt(client, stripe, processed=True)
    reconciler = client.app.state.reconciler

    assert str(await reconciler.run_once()) == "nothing to reconcile"  # lease still held
    clock.advance(seconds=91)
    report = await reconciler.run_once()

    assert report.actions == {"resumed": 1}
    assert await state_of(db) == ["session_created"]
    assert len(stripe.sessions) == 1
    order = await db.fetchrow("select * from h2s_orders")
    assert order["session_id"] == stripe.sessions[0]["id"]
    assert (await reconciler.run_once()).actions == {}


async def test_a_checkout_stuck_past_the_deadline_is_cleaned_and_its_session_expired(
    client, db, stripe, clock
):
    await dead_attempt(client, stripe, processed=True)
    clock.advance(minutes=16)

    report = await client.app.state.reconciler.run_once()

    assert report.actions == {"cleaned": 1}
    assert await state_of(db) == ["cleaned"]
    assert [s["status"] for s in stripe.sessions] == ["expired"]
    order = await db.fetchrow("select status from h2s_orders")
    job = await db.fetchrow("select status from h2s_dispatch_jobs")
    assert (order["status"], job["status"]) == ("cancelled", "cancelled")


async def test_a_paid_session_whose_event_never_came_is_settled(client, db, stripe, clock):
    body = (await client.post("/api/checkout", json=checkout_body())).json()
    stripe.complete_session(body["pay"]["session_id"])  # paid, but no webhook arrives
    reconciler = client.app.state.reconciler

    assert (await reconciler.run_once()).actions == {}  # not past expiry yet
    clock.advance(minutes=63)
    report = await reconciler.run_once()

    assert report.actions == {"session_paid": 1}
    assert await state_of(db) == ["paid"]
    assert await db.fetchval("select status from h2s_dispatch_jobs") == "dispatchable"


async def test_an_abandoned_session_is_expired_and_its_job_cancelled(client, db, stripe, clock):
    await client.post("/api/checkout", json=checkout_body())
    clock.advance(minutes=63)

    report = await client.app.state.reconciler.run_once()

    assert report.actions == {"session_expired": 1}
    assert await state_of(db) == ["expired"]
    assert [s["status"] for s in stripe.sessions] == ["expired"]
    assert await db.fetchval("select status from h2s_dispatch_jobs") == "cancelled"


async def test_two_reconcile_processes_at_once_handle_each_stuck_checkout_once(
    client, db, stripe, database_url, emulator
):
    for i in range(6):
        await dead_attempt(client, stripe, processed=bool(i % 2), email=f"stuck{i}@example.com")
    # Their leases end now (the processes are long dead).
    await db.execute(
        "update h2s_checkouts set locked_until = now() - interval '1 second',"
        " updated_at = now() - interval '2 minutes'"
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "STRIPE_API_BASE": emulator.base_url,
        "STRIPE_API_KEY": EMULATOR_API_KEY,
        "H2S_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "h2s_checkout", "reconcile"]
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]

    assert all(p.returncode == 0 for p in procs), outputs
    assert await state_of(db) == ["session_created"] * 6
    assert len(stripe.sessions) == 6
    resumed = await db.fetchval(
        "select count(*) from h2s_checkout_traces where event = 'checkout.resumed'"
    )
    assert resumed == 6
    keys = [r.idempotency_key for r in stripe.find_requests(CREATE)]
    # Each checkout's key was sent by its dead attempt and by exactly one reconciler.
    assert sorted(keys.count(k) for k in set(keys)) == [2] * 6


async def test_only_the_sessions_past_expiry_are_asked_about_found_by_their_expiry(
    client, db, stripe, clock
):
    # An afternoon of sales: two sessions opened early, three half an hour later.
    for n in range(2):
        await client.post("/api/checkout", json=checkout_body(email=f"early{n}@example.com"))
    clock.advance(minutes=30)
    for n in range(3):
        await client.post("/api/checkout", json=checkout_body(email=f"late{n}@example.com"))
    clock.advance(minutes=33)  # the early ones are past expiry and its grace, the others not

    report = await client.app.state.reconciler.run_once()

    assert report.actions == {"session_expired": 2}
    assert await state_of(db) == ["expired"] * 2 + ["session_created"] * 3
    # The pass finds them by expiry, not by reading every open session's row (a busy hour's
    # worth at every pass): the lease's plan goes through the open sessions' expiry index.
    now = clock()
    await db.execute("set enable_seqscan = off")
    plan = await db.fetch(
        "explain " + reconcile_sql._LEASE_OPEN_SESSIONS, now, now, 10, now + timedelta(minutes=5)
    )
    assert "h2s_checkouts_open_sessions_expiry" in "\n".join(row[0] for row in plan)
