"""The emulator as a separate process (`python -m stripe_checkout_emulator`)."""

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import stripe

from emulator_sdk import API_KEY, pay_form, session_params

SRC = Path(__file__).parents[2] / "src"


@pytest.fixture(scope="module")
def process_url() -> Iterator[tuple[str, str]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stripe_checkout_emulator",
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
        # No token given: it makes one and prints it on the next line.
        token = re.fullmatch(r"admin token: (emu_admin_\w+)\n", proc.stdout.readline())
        assert token, "no admin token line"
        yield match.group(1), token[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_separate_process_serves_the_sync_sdk_and_the_admin_api(
    process_url: tuple[str, str],
) -> None:
    process_url, token = process_url
    client = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": process_url},
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
        max_network_retries=0,
    )
    with httpx.Client(base_url=process_url, headers={"Authorization": f"Bearer {token}"}) as admin:
        refused = httpx.get(f"{process_url}/_emulator/config")
        config = admin.get("/_emulator/config").json()
        admin.post("/_emulator/faults", json={"kind": "status", "status": 500, "times": 1})
        with pytest.raises(stripe.APIError):
            client.v1.checkout.sessions.create(session_params())
        session = client.v1.checkout.sessions.create(session_params())
        logged = admin.get("/_emulator/requests").json()["requests"]

    assert refused.status_code == 401
    assert config["latency_ms"] == 1
    assert session.url == f"{process_url}/c/pay/{session.id}"
    assert [(r["status"], r["fault"]) for r in logged] == [(500, "status"), (200, None)]


def test_separate_process_sends_webhooks_configured_by_environment() -> None:
    from webhook_receiver import Receiver

    secret = "whsec_from_env"
    with Receiver() as endpoint:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
            "H2S_EMULATOR_WEBHOOK_URL": endpoint.url,
            "STRIPE_WEBHOOK_SECRET": secret,
            "H2S_EMULATOR_ADMIN_TOKEN": "emu_admin_from_env",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "stripe_checkout_emulator", "serve", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            match = re.search(r"listening on (http://\S+)", proc.stdout.readline())
            assert match
            url = match.group(1)
            client = stripe.StripeClient(
                API_KEY,
                base_addresses={"api": url},
                http_client=stripe.HTTPXClient(allow_sync_methods=True),
                max_network_retries=0,
            )
            session = client.v1.checkout.sessions.create(session_params())
            with httpx.Client() as browser:
                page = browser.get(session.url)
                paid = browser.post(f"{session.url}/pay", data=pay_form(session.url))
                admin = {"Authorization": "Bearer emu_admin_from_env"}
                config = browser.get(f"{url}/_emulator/config", headers=admin).json()
            [received] = endpoint.wait(1)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    assert "$39.99" in page.text
    assert paid.status_code == 303
    assert (config["webhook_url"], config["webhook_secret_set"]) == (endpoint.url, True)
    assert secret not in json.dumps(config)
    event = stripe.Webhook.construct_event(
        received.body, received.headers["Stripe-Signature"], secret
    )
    assert event.type == "checkout.session.completed"
    assert event.data.object.id == session.id
