"""The emulator as a separate process (`python -m h2s_checkout.payments.emulator`)."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import stripe
from emulator_sdk import API_KEY, session_params

SRC = Path(__file__).parents[2] / "src"


@pytest.fixture(scope="module")
def process_url() -> Iterator[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "h2s_checkout.payments.emulator",
            "--port",
            "0",
            "--latency-ms",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, f"unexpected first line: {line!r}"
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_separate_process_serves_the_sync_sdk_and_the_admin_api(process_url: str) -> None:
    client = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": process_url},
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
        max_network_retries=0,
    )
    with httpx.Client(base_url=process_url) as admin:
        config = admin.get("/_emulator/config").json()
        admin.post("/_emulator/faults", json={"kind": "status", "status": 500, "times": 1})
        with pytest.raises(stripe.APIError):
            client.v1.checkout.sessions.create(session_params())
        session = client.v1.checkout.sessions.create(session_params())
        logged = admin.get("/_emulator/requests").json()["requests"]

    assert config["latency_ms"] == 1
    assert session.url == f"{process_url}/c/pay/{session.id}"
    assert [(r["status"], r["fault"]) for r in logged] == [(500, "status"), (200, None)]
