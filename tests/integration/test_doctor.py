"""`h2s-checkout doctor`: every count is 0 on healthy data, and each anomaly moves its own."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

import asyncpg
import pytest

from h2s_checkout.flows.doctor import DATABASE_CONCURRENCY, DoctorOptions, any_failing, run_checks
from h2s_checkout.settings import EMULATOR_API_KEY
from support import checkout_body, session_request, signed, stripe_event

CREATE = "POST /v1/checkout/sessions"
CLEAN = {
    "orders_without_jobs": 0,
    "orders_without_jobs_by_metadata": 0,
    "jobs_without_orders": 0,
    "stuck_checkouts": 0,
    "sessions_past_expiry_without_outcome": 0,
    "paid_after_cleanup": 0,
    "refunds_failed": 0,
    "refunds_not_settled": 0,
    "holds_lapsing_within_24h": 0,
    "authorizations_expired": 0,
    "captures_not_settled": 0,
    "unsettled_cleanups": 0,
    "undelivered_events": 0,
    "orders_missing_at_provider": 0,
    "provider_sessions_without_live_order": 0,
}


async def checkout(client, email: str = "ana@example.com") -> dict:
    answer = await client.post("/api/checkout", json=checkout_body(email=email))
    assert answer.status_code == 201, answer.text
    return answer.json()


async def deliver(client, event_type: str, session: dict) -> None:
    body, headers = signed(stripe_event(event_type, session))
    answer = await client.post("/api/stripe/webhook", content=body, headers=headers)
    assert answer.status_code == 200, answer.text


async def healthy_history(client, stripe) -> list[dict]:
    """Checkouts that end every normal way: open, paid, expired, and cleaned after a fault."""
    made = [await checkout(client, f"user{i}@example.com") for i in range(3)]
    await deliver(
        client,
        "checkout.session.completed",
        stripe.complete_session(made[1]["pay"]["session_id"]),
    )
    await deliver(
        client, "checkout.session.expired", stripe.expire_session(made[2]["pay"]["session_id"])
    )
    stripe.faults.add("status", CREATE, status=400, times=1)
    failed = await client.post("/api/checkout", json=checkout_body(email="failed@example.com"))
    assert failed.status_code == 502
    return made


async def counts(client, db, **options) -> dict[str, int | None]:
    gateway = client.app.state.payment_gateway
    return {r.name: r.count for r in await run_checks(db, gateway, DoctorOptions(**options))}


async def test_healthy_checkouts_count_nothing(client, db, stripe):
    await healthy_history(client, stripe)

    results = await run_checks(db, client.app.state.payment_gateway)

    assert {r.name: r.count for r in results} == CLEAN
    assert {r.status for r in results} == {"ok"}
    assert not any_failing(results)


async def test_an_order_whose_job_is_gone_is_counted_by_both_joins(client, db, stripe):
    body = (await healthy_history(client, stripe))[0]
    await db.execute("update h2s_checkouts set job_id = null where order_id = $1", body["order_id"])
    await db.execute("delete from h2s_dispatch_jobs where order_id = $1", body["order_id"])

    results = await run_checks(db, client.app.state.payment_gateway)

    assert {r.name: r.count for r in results} == CLEAN | {
        "orders_without_jobs": 1,
        "orders_without_jobs_by_metadata": 1,
    }
    assert next(r for r in results if r.name == "orders_without_jobs").examples == (
        body["order_id"],
    )
    assert any_failing(results)


async def test_a_job_without_its_order_id_in_metadata_fails_the_seeds_query(client, db, stripe):
    body = (await healthy_history(client, stripe))[0]
    await db.execute(
        "update h2s_dispatch_jobs set metadata = metadata - 'order_id' where order_id = $1",
        body["order_id"],
    )

    assert await counts(client, db) == CLEAN | {"orders_without_jobs_by_metadata": 1}


async def test_a_job_whose_order_is_gone_is_counted(client, db, stripe):
    await healthy_history(client, stripe)
    # The foreign key forbids this row: drop it in a transaction that is rolled back.
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute(
            "alter table h2s_dispatch_jobs drop constraint h2s_dispatch_jobs_order_id_fkey"
        )
        await db.execute(
            """
            insert into h2s_dispatch_jobs (job_id, order_id, recipient_id, sequence_id, step_id,
                                           status, due_at, metadata)
            select gen_random_uuid(), 'ORD-GONE', recipient_id, sequence_id, step_id, 'queued',
                   now() + interval '1 day', '{"order_id": "ORD-GONE"}'
            from h2s_dispatch_jobs limit 1
            """
        )
        found = await counts(client, db)
    finally:
        await transaction.rollback()
    assert found == CLEAN | {"jobs_without_orders": 1}


async def test_an_order_and_job_with_far_apart_timestamps_still_find_each_other(client, db, stripe):
    # The joins first look for a partner made in the same window; one made days apart (a
    # hand edit, a restore) must still be found by the exact lookup behind it.
    body = (await healthy_history(client, stripe))[0]
    await db.execute(
        "update h2s_dispatch_jobs set created_at = now() - interval '10 days' where order_id = $1",
        body["order_id"],
    )
    assert await counts(client, db) == CLEAN

    await db.execute(
        "update h2s_dispatch_jobs set created_at = now() where order_id = $1", body["order_id"]
    )
    await db.execute(
        "update h2s_orders set created_at = now() - interval '10 days' where order_id = $1",
        body["order_id"],
    )
    assert await counts(client, db) == CLEAN


async def test_old_anomalies_are_outside_the_window(client, db, stripe):
    body = (await healthy_history(client, stripe))[0]
    await db.execute("update h2s_checkouts set job_id = null where order_id = $1", body["order_id"])
    await db.execute("delete from h2s_dispatch_jobs where order_id = $1", body["order_id"])
    await db.execute(
        "update h2s_orders set created_at = now() - interval '3 days' where order_id = $1",
        body["order_id"],
    )

    assert (await counts(client, db))["orders_without_jobs"] == 0
    assert (await counts(client, db, since_hours=100))["orders_without_jobs"] == 1


async def test_a_checkout_idle_past_the_deadline_is_stuck(client, db, stripe):
    body = (await healthy_history(client, stripe))[0]
    await db.execute(
        "update h2s_checkouts set state = 'job_queued',"
        " updated_at = now() - interval '11 minutes' where order_id = $1",
        body["order_id"],
    )

    assert await counts(client, db) == CLEAN | {"stuck_checkouts": 1}
    assert await counts(client, db, stuck_minutes=20) == CLEAN


async def test_a_session_expired_long_ago_without_an_outcome_is_counted(client, db, stripe):
    body = (await healthy_history(client, stripe))[0]
    await db.execute(
        """
        update h2s_checkouts
        set session_request = jsonb_set(session_request, '{expires_at}',
                                        to_jsonb(now() - interval '11 minutes'))
        where order_id = $1
        """,
        body["order_id"],
    )

    assert await counts(client, db) == CLEAN | {"sessions_past_expiry_without_outcome": 1}


async def test_a_payment_after_cleanup_is_counted_once_per_checkout(client, db, stripe):
    body = (await healthy_history(client, stripe))[0]
    for _ in range(2):
        await db.execute(
            """
            insert into h2s_checkout_failures (checkout_id, phase, error_code, error_class,
                                               message)
            values ($1::uuid, 'payment', 'paid_after_cleanup', 'PaidAfterCleanup', 'test')
            """,
            body["checkout_trace_id"],
        )

    assert await counts(client, db) == CLEAN | {"paid_after_cleanup": 1}


async def test_an_order_whose_session_the_provider_does_not_know(client, db, stripe):
    body = (await healthy_history(client, stripe))[0]
    await db.execute(
        "update h2s_orders set session_id = 'cs_test_never_made' where order_id = $1",
        body["order_id"],
    )

    results = await run_checks(db, client.app.state.payment_gateway)

    assert {r.name: r.count for r in results} == CLEAN | {"orders_missing_at_provider": 1}
    missing = next(r for r in results if r.name == "orders_missing_at_provider")
    assert missing.examples == (body["order_id"],)


async def test_a_provider_outage_is_an_error_not_a_clean_bill(client, db, stripe):
    await healthy_history(client, stripe)
    stripe.faults.add("status", "GET /v1/checkout/sessions/*", status=500)
    stripe.faults.add("status", "GET /v1/checkout/sessions", status=500)

    results = {r.name: r for r in await run_checks(db, client.app.state.payment_gateway)}

    assert results["orders_missing_at_provider"].status == "error"
    assert results["provider_sessions_without_live_order"].status == "error"
    assert results["provider_sessions_without_live_order"].count is None
    assert any_failing(list(results.values()))


async def test_an_open_session_whose_order_does_not_exist(client, db, stripe):
    await healthy_history(client, stripe)
    gateway = client.app.state.payment_gateway
    orphan = await gateway.create_session(session_request("ORD-NOWHERE", "doctor-test-1"))
    # An orphan that can no longer be paid is harmless.
    ended = await gateway.create_session(session_request("ORD-ENDED", "doctor-test-2"))
    stripe.expire_session(ended.id)

    results = await run_checks(db, gateway)

    assert {r.name: r.count for r in results} == CLEAN | {"provider_sessions_without_live_order": 1}
    orphans = next(r for r in results if r.name == "provider_sessions_without_live_order")
    assert orphans.examples == (orphan.id,)


async def test_an_open_session_on_a_cleaned_checkout(client, db, stripe):
    body = (await healthy_history(client, stripe))[0]
    # As if cleanup ran but could not expire the session: the customer can still pay.
    await db.execute(
        "update h2s_orders set status = 'cancelled' where order_id = $1", body["order_id"]
    )
    await db.execute(
        "update h2s_dispatch_jobs set status = 'cancelled' where order_id = $1", body["order_id"]
    )
    await db.execute(
        "update h2s_checkouts set state = 'cleaned' where order_id = $1", body["order_id"]
    )

    assert await counts(client, db) == CLEAN | {"provider_sessions_without_live_order": 1}

    # Paid at the provider, it is still counted: a refund is owed.
    stripe.complete_session(body["pay"]["session_id"])
    assert await counts(client, db) == CLEAN | {"provider_sessions_without_live_order": 1}


async def test_sessions_are_listed_across_pages(client, db, stripe):
    gateway = client.app.state.payment_gateway
    for i in range(105):
        await gateway.create_session(session_request(f"ORD-PAGE{i}", f"doctor-page-{i}"))

    found = [s async for s in gateway.list_sessions(0)]

    assert len(found) == len({s.id for s in found}) == 105
    assert (await counts(client, db))["provider_sessions_without_live_order"] == 105
    assert len(stripe.find_requests("GET /v1/checkout/sessions")) >= 2


async def test_without_a_provider_its_checks_are_skipped(client, db, stripe):
    await healthy_history(client, stripe)

    results = {r.name: r for r in await run_checks(db, None)}

    for name in ("orders_missing_at_provider", "provider_sessions_without_live_order"):
        assert results[name].status == "skipped"
        assert results[name].skipped == "no payment provider configured"
    assert not any_failing(list(results.values()))


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "h2s_checkout",
        "doctor",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def cli_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "STRIPE_API_BASE", "STRIPE_API_KEY", "H2S_ADMIN_TOKEN")
    }
    return env | {"H2S_DATA_DIR": str(tmp_path), "H2S_LOG_FORMAT": "json", **extra}


async def test_the_command_exits_0_when_healthy_and_non_zero_after_an_anomaly(
    client, db, stripe, database_url, emulator, tmp_path
):
    body = (await healthy_history(client, stripe))[0]
    env = cli_env(
        tmp_path,
        DATABASE_URL=database_url,
        STRIPE_API_BASE=emulator.base_url,
        STRIPE_API_KEY=EMULATOR_API_KEY,
    )

    code, out, err = await run_cli(env, "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ok"] is True
    assert {c["name"]: c["count"] for c in report["checks"]} == CLEAN

    await db.execute(
        "update h2s_checkouts set state = 'failed',"
        " updated_at = now() - interval '1 hour' where order_id = $1",
        body["order_id"],
    )
    code, out, err = await run_cli(env, "--json")
    assert code == 1, out + err
    report = json.loads(out)
    assert report["ok"] is False
    assert {c["name"]: c["count"] for c in report["checks"]} == CLEAN | {"stuck_checkouts": 1}
    stuck = next(c for c in report["checks"] if c["name"] == "stuck_checkouts")
    assert stuck["status"] == "problem"
    assert stuck["examples"] == [body["checkout_trace_id"]]

    code, out, err = await run_cli(env)
    assert code == 1, out + err
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["stuck_checkouts"].split()[1] == "1"
    assert lines["orders_without_jobs"].split()[1] == "0"
    assert "doctor: 1 of 15 checks found something" in out


async def test_the_command_fails_the_provider_checks_when_no_provider_can_be_found(
    client, db, stripe, database_url, tmp_path
):
    """No STRIPE_* and no serve running this folder's emulator: the doctor cannot look at
    the provider, so it must not say "nothing wrong found" and exit 0."""
    await healthy_history(client, stripe)
    (tmp_path / "stripe-emulator-url").write_text("http://127.0.0.1:9/\n")  # left by a crash

    code, out, err = await run_cli(cli_env(tmp_path, DATABASE_URL=database_url), "--json")
    table_code, table, _ = await run_cli(cli_env(tmp_path, DATABASE_URL=database_url))

    assert (code, table_code) == (1, 1), out + err
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    for name in ("orders_missing_at_provider", "provider_sessions_without_live_order"):
        assert checks[name]["status"] == "error"
        assert checks[name]["count"] is None
        assert "cannot reach the payment provider" in checks[name]["error"]
    assert "no `h2s-checkout serve` of" in err
    assert "payment provider's checks did not run" in err
    assert "nothing wrong found" not in table
    assert "doctor: 2 of 15 checks found something" in table


async def test_the_command_exits_non_zero_when_the_configured_provider_does_not_answer(
    client, db, stripe, database_url, tmp_path
):
    await healthy_history(client, stripe)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = cli_env(
        tmp_path,
        DATABASE_URL=database_url,
        STRIPE_API_BASE=f"http://127.0.0.1:{port}",
        STRIPE_API_KEY="sk_test_h2s_emulator",
        H2S_STRIPE_MAX_RETRIES="0",
        H2S_STRIPE_TIMEOUT_S="2",
    )

    code, out, err = await run_cli(env, "--json")

    assert code == 1, out + err
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["provider_sessions_without_live_order"]["status"] == "error"
    assert checks["orders_missing_at_provider"]["status"] == "error"


async def test_a_cleanup_the_provider_has_not_settled(client, db, stripe):
    await healthy_history(client, stripe)
    await db.execute(
        "update h2s_checkouts set needs_settlement = true,"
        " updated_at = now() - interval '11 minutes' where state = 'cleaned'"
    )
    assert await counts(client, db) == CLEAN | {"unsettled_cleanups": 1}


async def test_an_open_session_on_an_expired_order(client, db, stripe):
    body = (await healthy_history(client, stripe))[0]
    # The order ended unpaid, but its session can still be paid.
    await db.execute(
        "update h2s_orders set status = 'expired' where order_id = $1", body["order_id"]
    )
    assert await counts(client, db) == CLEAN | {"provider_sessions_without_live_order": 1}


async def test_checks_run_two_at_a_time_answer_as_one_at_a_time(client, db, stripe, clock):
    made = await healthy_history(client, stripe)
    await db.execute(
        "update h2s_checkouts set job_id = null where order_id = $1", made[0]["order_id"]
    )
    await db.execute("delete from h2s_dispatch_jobs where order_id = $1", made[0]["order_id"])
    await db.execute(
        "update h2s_checkouts set state = 'job_queued', updated_at = now() - interval '1 hour'"
        " where order_id = $1",
        made[1]["order_id"],
    )
    gateway = client.app.state.payment_gateway

    one = await run_checks(db, gateway)
    two = await run_checks(client.app.state.db_pool, gateway, concurrency=DATABASE_CONCURRENCY)

    assert [(r.name, r.count, r.examples) for r in two] == [
        (r.name, r.count, r.examples) for r in one
    ]
    assert {r.name: r.count for r in two} == CLEAN | {
        "orders_without_jobs": 1,
        "orders_without_jobs_by_metadata": 1,
        "stuck_checkouts": 1,
    }


async def test_a_failing_check_is_raised_after_the_others_have_ended(client, db, stripe):
    await healthy_history(client, stripe)
    pool = client.app.state.db_pool
    await db.execute("alter table h2s_refunds rename to h2s_refunds_gone")
    try:
        with pytest.raises(asyncpg.UndefinedTableError):
            await run_checks(pool, None, concurrency=DATABASE_CONCURRENCY)
        # No check is left running: every connection the checks took is back in the pool.
        assert pool.get_idle_size() == pool.get_size()
    finally:
        await db.execute("alter table h2s_refunds_gone rename to h2s_refunds")


async def test_a_hold_lapsing_within_a_day_is_listed_for_staff(client, db, stripe):
    held = (await healthy_history(client, stripe))[1]["order_id"]
    # A hold that lapses in 30 hours is not yet listed; one that lapses in 2 hours is.
    await db.execute(
        "update h2s_orders set status = 'authorized', amount_authorized_cents = total_cents,"
        " authorization_expires_at = now() + interval '30 hours' where order_id = $1",
        held,
    )
    before = await counts(client, db)
    await db.execute(
        "update h2s_orders set authorization_expires_at = now() + interval '2 hours'"
        " where order_id = $1",
        held,
    )
    results = {r.name: r for r in await run_checks(db, client.app.state.payment_gateway)}

    assert before["holds_lapsing_within_24h"] == 0
    assert results["holds_lapsing_within_24h"].count == 1
    assert results["holds_lapsing_within_24h"].examples == (held,)
