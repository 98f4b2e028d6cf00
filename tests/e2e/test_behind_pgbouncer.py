"""The service behind a real PgBouncer (Debian's 1.18) in transaction mode: racing
duplicates over two processes, paying, cancelling with a refund, events, the reconciler
and migrations, all with H2S_DB_POOLER=transaction and no 5xx; refused without it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from events_receiver import EventReceiver
from h2s_checkout.settings import EMULATOR_API_KEY
from h2s_checkout.store.migrate import migration_versions
from servers import ServerProcess
from support import ADMIN_TOKEN, WEBHOOK_SECRET, checkout_body

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CREATE = "POST /v1/checkout/sessions"
POOLED = {"H2S_DB_POOLER": "transaction", "H2S_EVENTS_ALLOW_PRIVATE": "true"}
ADVISORY_LOCKS = "select count(*) from pg_locks where locktype = 'advisory'"


@pytest.fixture
def pooled(
    pgbouncer, database_url: str, emulator, db, stripe, tmp_path: Path
) -> Iterator[Callable[..., ServerProcess]]:
    """Servers whose DATABASE_URL is PgBouncer; ``direct=True`` also gives them the
    server itself as H2S_DATABASE_DIRECT_URL. After the test: not one 5xx answered."""
    started: list[ServerProcess] = []

    def start(*, direct: bool = True, **env: str) -> ServerProcess:
        extra = {**POOLED, **({"H2S_DATABASE_DIRECT_URL": database_url} if direct else {})}
        server = ServerProcess(pgbouncer.dsn, emulator.base_url, tmp_path, **extra, **env)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()
    for server in started:
        log = server.log_path.read_text()
        assert '"status":5' not in log, log[-3000:]
        assert "prepared statement" not in log, log[-3000:]


def cli(dsn: str, emulator_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """An `h2s-checkout` command on ``dsn`` (PgBouncer), with the pooler setting unless
    ``env`` says otherwise."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("H2S_", "STRIPE_"))}
    return subprocess.run(
        [sys.executable, "-m", "h2s_checkout", *args],
        env={
            **base,
            "DATABASE_URL": dsn,
            "STRIPE_API_BASE": emulator_url,
            "STRIPE_API_KEY": EMULATOR_API_KEY,
            "H2S_LOG_FORMAT": "json",
            **POOLED,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


async def wait_for(db, query: str, expected, *args, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while (value := await db.fetchval(query, *args)) != expected:
        assert time.monotonic() < deadline, f"{query!r} is {value!r}, not {expected!r}"
        await asyncio.sleep(0.1)
    return value


async def test_50_racing_duplicates_over_two_processes_make_one_checkout(pooled, db, stripe):
    urls = [pooled().url, pooled().url]
    stripe.faults.add("latency", CREATE, seconds=0.5)  # duplicates arrive mid-flight
    body = checkout_body(email="race@example.com")
    async with httpx.AsyncClient(timeout=30) as http:
        answers = await asyncio.gather(
            *(http.post(f"{urls[i % 2]}/api/checkout", json=body) for i in range(50))
        )
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
    created = [a.json() for a in answers if a.status_code == 201]
    assert created
    assert all(c == created[0] for c in created)
    assert await db.fetchval("select count(*) from h2s_orders") == 1
    assert await db.fetchval("select count(*) from h2s_dispatch_jobs") == 1
    assert len(stripe.sessions) == 1


async def test_pay_then_cancel_with_a_refund_and_every_event_reaches_its_subscriber(
    pooled, db, stripe, emulator
):
    # A long poll: the events can only come this soon through LISTEN on the direct URL.
    server = pooled(H2S_EVENTS_POLL_S="30")
    hooks = emulator.state.webhooks
    hooks.url, hooks.secret = f"{server.url}/api/stripe/webhook", WEBHOOK_SECRET
    try:
        with EventReceiver() as receiver:
            async with httpx.AsyncClient(base_url=server.url, headers=ADMIN, timeout=30) as http:
                made = await http.post("/api/event-endpoints", json={"url": receiver.url})
                secret = made.json()["secret"]
                booked = await http.post("/api/checkout", json=checkout_body())
                assert booked.status_code == 201, booked.text
                body = booked.json()
                await receiver.until(1, timeout=10)

                stripe.complete_session(body["pay"]["session_id"])  # its webhook follows
                await wait_for(
                    db,
                    "select status from h2s_orders where order_id = $1",
                    "paid",
                    body["order_id"],
                )
                cancel = await http.post(
                    f"/api/orders/{body['order_id']}/cancel",
                    json={"reason": "requested_by_customer"},
                )
                # 202 while the refund is pending, 200 once it settled within the request.
                assert (cancel.status_code, cancel.json()["state"]) in (
                    (202, "refund_pending"),
                    (200, "refunded"),
                ), cancel.text
                await wait_for(db, "select state from h2s_checkouts", "refunded")
                view = (await http.get(f"/api/checkouts/{body['checkout_trace_id']}")).json()
                assert (view["order"]["status"], view["job"]["status"]) == (
                    "refunded",
                    "cancelled",
                )
                assert [r["status"] for r in view["refunds"]] == ["succeeded"]
            types = {"order.created", "order.paid", "order.refunded"}
            deadline = time.monotonic() + 10
            while not types <= {d.verify(secret)["type"] for d in receiver.snapshot()}:
                assert time.monotonic() < deadline, [d.event["type"] for d in receiver.snapshot()]
                await asyncio.sleep(0.1)
    finally:
        hooks.url = None
    assert await db.fetchval("select count(*) from h2s_webhook_events") >= 2


async def test_without_a_direct_url_events_leave_on_the_poll_and_the_start_says_so(
    pooled, db, stripe
):
    server = pooled(direct=False)
    log = server.log_path.read_text()
    assert '"event":"events.polling_only"' in log
    assert "H2S_DATABASE_DIRECT_URL" in log
    with EventReceiver() as receiver:
        async with httpx.AsyncClient(base_url=server.url, headers=ADMIN, timeout=30) as http:
            await http.post("/api/event-endpoints", json={"url": receiver.url})
            answers = await asyncio.gather(
                *(
                    http.post("/api/checkout", json=checkout_body(email=f"p{n}@example.com"))
                    for n in range(10)
                )
            )
        assert {a.status_code for a in answers} == {201}
        sent = await receiver.until(10)
    assert {d.event["type"] for d in sent} == {"order.created"}
    await wait_for(db, "select count(*) from h2s_event_deliveries where status = 'delivered'", 10)


async def test_the_reconciler_and_the_doctor_run_through_pgbouncer(
    pooled, pgbouncer, db, stripe, emulator
):
    server = pooled(direct=False, H2S_CHECKOUT_LEASE_S="1", H2S_RECONCILE_INTERVAL_S="0")
    stripe.faults.add("timeout", CREATE, seconds=30, processed=False)
    async with httpx.AsyncClient(timeout=30) as http:
        pending = [
            asyncio.create_task(
                http.post(
                    f"{server.url}/api/checkout", json=checkout_body(email=f"r{n}@example.com")
                )
            )
            for n in range(4)
        ]
        deadline = time.monotonic() + 20
        while len(stripe.find_requests(CREATE)) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        server.kill()  # cut off after phase 1, each with its lease held
        await asyncio.gather(*pending, return_exceptions=True)
    stripe.faults.clear()
    assert await db.fetchval("select count(*) from h2s_checkouts where state = 'job_queued'") == 4
    await asyncio.sleep(1.5)  # the dead process's leases run out

    reconcile = cli(pgbouncer.dsn, emulator.base_url, "reconcile", H2S_CHECKOUT_LEASE_S="1")
    assert reconcile.returncode == 0, reconcile.stderr
    states = await db.fetch("select state from h2s_checkouts")
    assert {r["state"] for r in states} == {"session_created"}
    doctor = cli(pgbouncer.dsn, emulator.base_url, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert await db.fetchval(ADVISORY_LOCKS) == 0


async def _fresh_database(database_url: str) -> str:
    name = f"bounced_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"create database {name}")
    finally:
        await conn.close()
    return database_url.rsplit("/", 1)[0] + f"/{name}"


async def test_migrating_through_pgbouncer_leaves_no_lock_and_twice_at_once_applies_once(
    pgbouncer, database_url, emulator, db
):
    """dbmate's own lock is a session lock, which a transaction pooler leaves held on a
    server connection after dbmate exits; the next migrate then waited 5 minutes for it."""
    fresh = pgbouncer.dsn_for(await _fresh_database(database_url))
    for _ in range(2):  # each at once, not after dbmate's 5-minute lock timeout
        migrated = cli(fresh, emulator.base_url, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert await db.fetchval(ADVISORY_LOCKS) == 0

    # Two at once on another fresh database: one waits for the other's lock, each
    # migration is applied once, and both finish.
    direct = await _fresh_database(database_url)
    fresh = pgbouncer.dsn_for(direct)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("H2S_", "STRIPE_"))}
    both = [
        subprocess.Popen(
            [sys.executable, "-m", "h2s_checkout", "migrate"],
            env={**env, "DATABASE_URL": fresh, **POOLED},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in both]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert await db.fetchval(ADVISORY_LOCKS) == 0
    conn = await asyncpg.connect(direct)
    try:
        applied = [r[0] for r in await conn.fetch("select version from schema_migrations")]
    finally:
        await conn.close()
    assert sorted(applied) == migration_versions()


@pytest.mark.parametrize(
    ("command", "env", "says"),
    [
        (["migrate"], {"H2S_DB_POOLER": "none"}, "Set H2S_DB_POOLER=transaction"),
        (["doctor"], {"H2S_DB_POOLER": "none"}, "Set H2S_DB_POOLER=transaction"),
        (["reconcile"], {"H2S_DB_POOLER": "none"}, "Set H2S_DB_POOLER=transaction"),
        (["migrate"], {"H2S_DB_POOLER": "transaction-prepared"}, "PgBouncer before 1.21"),
    ],
)
def test_a_pooler_the_settings_do_not_declare_is_refused_at_start(
    pgbouncer, emulator, command, env, says
):
    refused = cli(pgbouncer.dsn, emulator.base_url, *command, **env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert says in refused.stderr
    assert "Traceback" not in refused.stderr


def test_serve_without_the_setting_stops_before_answering_anything(
    pgbouncer, emulator, tmp_path, db
):
    server = ServerProcess(pgbouncer.dsn, emulator.base_url, tmp_path)
    with pytest.raises(RuntimeError, match="exited early"):
        server.start()
    assert server.proc is not None
    assert server.proc.returncode == 2
    assert "H2S_DB_POOLER=transaction" in server.log_path.read_text()
