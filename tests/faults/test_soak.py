"""A soak under load with 1% of Stripe calls failing: every accepted checkout ends
session_created (ready to be paid) or cleaned, and the worker's memory is reported."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time

import httpx
import psutil
import pytest

from servers import ServerProcess
from support import checkout_body

pytestmark = pytest.mark.slow

SOAK_SECONDS = float(os.environ.get("H2S_SOAK_SECONDS", "120"))
CLIENTS = int(os.environ.get("H2S_SOAK_CLIENTS", "16"))


def worker_rss_mb(server: ServerProcess) -> float:
    """Resident memory of the server's granian worker(s), the processes that serve."""
    parent = psutil.Process(server.proc.pid)
    workers = parent.children(recursive=True) or [parent]
    return max(p.memory_info().rss for p in workers) / 2**20


async def test_soak_with_one_percent_of_stripe_calls_failing(
    database_url, emulator, db, stripe, tmp_path
):
    stripe.faults.seed(7)
    stripe.faults.add("status", "POST /v1/checkout/sessions", status=500, probability=0.01)
    server = ServerProcess(
        database_url, emulator.base_url, tmp_path, H2S_RECONCILE_INTERVAL_S="0"
    ).start()
    statuses: collections.Counter[int | str] = collections.Counter()
    rss: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(timeout=30) as http:

            async def client(n: int, until: float) -> None:
                i = 0
                while time.monotonic() < until:
                    body = checkout_body(email=f"soak-{n}-{i}@example.com")
                    try:
                        answer = await http.post(f"{server.url}/api/checkout", json=body)
                        statuses[answer.status_code] += 1
                    except httpx.HTTPError as exc:
                        statuses[type(exc).__name__] += 1
                    i += 1

            # Warm up, then measure memory from a steady state.
            await asyncio.gather(*(client(n, time.monotonic() + 3) for n in range(CLIENTS)))
            rss["start_mb"] = worker_rss_mb(server)
            end = time.monotonic() + SOAK_SECONDS
            await asyncio.gather(*(client(1000 + n, end) for n in range(CLIENTS)))
            rss["end_mb"] = worker_rss_mb(server)
    finally:
        server.stop()

    report = {"seconds": SOAK_SECONDS, "clients": CLIENTS, "answers": dict(statuses), **rss}
    print("soak:", json.dumps(report))
    (tmp_path / "soak.json").write_text(json.dumps(report))
    assert set(statuses) <= {201, 502}, statuses
    assert statuses[201] > 0
    states = collections.Counter(
        r["state"] for r in await db.fetch("select state from h2s_checkouts")
    )
    assert set(states) <= {"session_created", "cleaned"}, states
    assert states["session_created"] == statuses[201]
    assert states["cleaned"] == statuses[502]
    open_on_cleaned = await db.fetchval(
        "select count(*) from h2s_checkouts where state = 'cleaned' and needs_settlement"
    )
    assert open_on_cleaned == 0
