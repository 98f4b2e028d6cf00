"""SIGKILL the server at each phase boundary under load; one reconcile pass mends it all."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from h2s_checkout.settings import EMULATOR_API_KEY
from support import checkout_body

pytestmark = pytest.mark.slow

CREATE = "POST /v1/checkout/sessions"

# What each round does to Stripe before the kill, i.e. where the checkouts are cut off.
ROUNDS = {
    "after_phase_1": {"kind": "timeout", "seconds": 30, "processed": False},
    "after_phase_2": {"kind": "timeout", "seconds": 30, "processed": True},
    "anywhere": {"kind": "latency", "seconds": 0.15},
}


async def load_then_kill(server, stripe, round_name: str, fault: dict, n: int = 16) -> None:
    options = dict(fault)
    stripe.faults.add(options.pop("kind"), CREATE, **options)
    seen = len(stripe.find_requests(CREATE))
    async with httpx.AsyncClient(timeout=60) as http:
        requests = [
            asyncio.create_task(
                http.post(
                    f"{server.url}/api/checkout",
                    json=checkout_body(email=f"{round_name}-{i}@example.com"),
                )
            )
            for i in range(n)
        ]
        deadline = time.monotonic() + 20
        while len(stripe.find_requests(CREATE)) - seen < n // 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        server.kill()
        await asyncio.gather(*requests, return_exceptions=True)
    stripe.faults.clear()


def run_cli(database_url: str, emulator_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "STRIPE_API_BASE": emulator_url,
        "STRIPE_API_KEY": EMULATOR_API_KEY,
        "H2S_CHECKOUT_LEASE_S": "1",
        "H2S_LOG_FORMAT": "json",
    }
    return subprocess.run(
        [sys.executable, "-m", "h2s_checkout", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def test_killed_servers_leave_nothing_stuck_or_doubled_after_one_reconcile(
    servers, db, stripe, database_url, emulator
):
    for round_name, fault in ROUNDS.items():
        server = servers(H2S_CHECKOUT_LEASE_S="1", H2S_RECONCILE_INTERVAL_S="0")
        await load_then_kill(server, stripe, round_name, fault)
    cut_off = await db.fetchval(
        "select count(*) from h2s_checkouts where state in ('pending_payment', 'job_queued')"
    )
    assert cut_off > 0  # the kills did land between phases

    servers(H2S_CHECKOUT_LEASE_S="1", H2S_RECONCILE_INTERVAL_S="0")  # a restart
    await asyncio.sleep(1.5)  # the dead processes' leases run out
    reconcile = run_cli(database_url, emulator.base_url, "reconcile")
    assert reconcile.returncode == 0, reconcile.stderr

    stuck = await db.fetchval(
        "select count(*) from h2s_checkouts"
        " where state in ('pending_payment', 'job_queued', 'failed')"
    )
    assert stuck == 0
    # None doubled: one job per order, one session per checkout, all linked both ways.
    orders = await db.fetch(
        "select o.order_id, o.session_id, o.status, c.state,"
        "       (select count(*) from h2s_dispatch_jobs j where j.order_id = o.order_id) jobs"
        " from h2s_orders o join h2s_checkouts c using (checkout_id)"
    )
    assert all(o["jobs"] == 1 for o in orders)
    sessions_by_order: dict[str, list[dict]] = {}
    for session in stripe.sessions:
        sessions_by_order.setdefault(session["client_reference_id"], []).append(session)
    for order in orders:
        sessions = sessions_by_order.get(order["order_id"], [])
        assert len(sessions) <= 1, order["order_id"]
        if order["state"] == "session_created":
            assert [s["id"] for s in sessions] == [order["session_id"]]
            assert sessions[0]["status"] == "open"
        else:
            assert order["state"] == "cleaned"
            assert all(s["status"] != "open" for s in sessions)
    doctor = run_cli(database_url, emulator.base_url, "doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert all(check["count"] == 0 for check in json.loads(doctor.stdout)["checks"])
    emails = await db.fetch(
        "select customer->>'email' email, count(*) from h2s_orders o"
        " join h2s_checkouts c using (checkout_id) where c.state <> 'cleaned' group by 1"
    )
    assert all(row["count"] == 1 for row in emails)
