"""PostgreSQL stopped and started under load: 503 with Retry-After, never 500, and recovery."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import time

import asyncpg
import httpx
import pytest

from h2s_checkout.settings import EMULATOR_API_KEY
from h2s_checkout.store.embedded import EmbeddedPostgres
from h2s_checkout.store.migrate import apply_migrations
from servers import ServerProcess
from support import checkout_body

pytestmark = pytest.mark.slow


@pytest.fixture
def own_postgres(tmp_path):
    """A PostgreSQL this test may stop and start."""
    pg = EmbeddedPostgres(tmp_path / "pg", durable=False)
    dsn = pg.start()
    apply_migrations(dsn)
    yield pg
    pg.stop()


async def drive(url: str, stop: asyncio.Event, answers: list, clients: int = 8) -> None:
    async def client(n: int) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            i = 0
            while not stop.is_set():
                body = checkout_body(email=f"outage-{n}-{i}@example.com")
                try:
                    answer = await http.post(f"{url}/api/checkout", json=body)
                    answers.append(
                        (time.monotonic(), answer.status_code, answer.headers, answer.json())
                    )
                except httpx.HTTPError as exc:
                    answers.append((time.monotonic(), type(exc).__name__, {}, {}))
                i += 1
                await asyncio.sleep(0.05)

    await asyncio.gather(*(client(n) for n in range(clients)))


async def test_a_database_outage_answers_503_and_the_pool_recovers(
    own_postgres, emulator, stripe, tmp_path
):
    server = ServerProcess(
        own_postgres.dsn,
        emulator.base_url,
        tmp_path,
        H2S_RECONCILE_INTERVAL_S="0",
        H2S_CHECKOUT_LEASE_S="1",
    ).start()
    answers: list = []
    stop = asyncio.Event()
    try:
        load = asyncio.create_task(drive(server.url, stop, answers))
        await asyncio.sleep(1.5)
        own_postgres.stop("fast")
        down_at = time.monotonic()
        await asyncio.sleep(2.0)
        own_postgres.start()
        up_at = time.monotonic()
        await asyncio.sleep(3.0)
        stop.set()
        await load
    finally:
        server.stop()

    statuses = collections.Counter(a[1] for a in answers)
    assert 500 not in statuses, statuses
    assert set(statuses) <= {201, 503}, statuses
    during = [a for a in answers if down_at + 0.2 < a[0] < up_at]
    assert during
    assert all(a[1] == 503 for a in during), collections.Counter(a[1] for a in during)
    for _, status, headers, body in answers:
        if status == 503:
            assert int(headers["retry-after"]) >= 1
            assert body["error"]["code"] == "database_unavailable"
    # The pool recovered by itself: the last second of the run is all 201.
    tail = [a[1] for a in answers if a[0] > up_at + 2.0]
    assert tail
    assert set(tail) == {201}

    # Whatever was cut off mid-checkout is finished or cleaned by one reconcile pass.
    await asyncio.sleep(1.2)
    env = {
        **os.environ,
        "DATABASE_URL": own_postgres.dsn,
        "STRIPE_API_BASE": emulator.base_url,
        "STRIPE_API_KEY": EMULATOR_API_KEY,
        "H2S_CHECKOUT_LEASE_S": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "h2s_checkout", "reconcile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    conn = await asyncpg.connect(own_postgres.dsn)
    try:
        stuck = await conn.fetchval(
            "select count(*) from h2s_checkouts"
            " where state in ('pending_payment', 'job_queued', 'failed')"
        )
        orphans = await conn.fetchval(
            "select count(*) from h2s_orders o left join h2s_dispatch_jobs j using (order_id)"
            " where j.job_id is null"
        )
    finally:
        await conn.close()
    assert (stuck, orphans) == (0, 0)
    doctor = subprocess.run(
        [sys.executable, "-m", "h2s_checkout", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
