"""`h2s-checkout trace` prints a checkout's timeline in the terminal."""

from __future__ import annotations

import os
import subprocess
import sys

from support import checkout_body


async def test_trace_prints_each_step_and_the_failure(client, db, stripe, database_url):
    ok = (await client.post("/api/checkout", json=checkout_body())).json()
    stripe.faults.add("status", "POST /v1/checkout/sessions", status=400)
    failed = (await client.post("/api/checkout", json=checkout_body(email="bo@example.com"))).json()

    env = {**os.environ, "DATABASE_URL": database_url}
    run = [sys.executable, "-m", "h2s_checkout", "trace"]
    good = subprocess.run([*run, ok["order_id"]], env=env, capture_output=True, text=True)
    bad = subprocess.run(
        [*run, failed["checkout_trace_id"]], env=env, capture_output=True, text=True
    )
    missing = subprocess.run([*run, "ORD-NOPE"], env=env, capture_output=True, text=True)

    assert good.returncode == 0, good.stderr
    assert "state: session_created" in good.stdout
    assert "pending_payment → job_queued (queue_job)" in good.stdout
    assert "job_queued → session_created (create_session)" in good.stdout
    assert "stripe.session_created" in good.stdout
    assert bad.returncode == 0
    assert "state: cleaned" in bad.stdout
    assert "FAILED in create_session: payment_provider_error" in bad.stdout
    assert "http=400" in bad.stdout
    assert missing.returncode == 1
