"""The embedded stack across restarts: the emulator keeps its port and its sessions, so a
pay link handed out before a restart (graceful or SIGKILL) still pays, and the webhook
still settles the checkout."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from emulator_sdk import pay_form
from h2s_checkout.embedded_stack import (
    EMULATOR_PORT_FILE,
    EMULATOR_STATE_FILE,
    StartupError,
    start_embedded_emulator,
)
from h2s_checkout.settings import Settings
from servers import EmbeddedServe
from support import checkout_body

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedServe]:
    serve = EmbeddedServe(tmp_path / "data")
    try:
        yield serve
    finally:
        serve.close()


def wait_for_state(http: httpx.Client, trace_id: str, state: str, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        view = http.get(f"/api/checkouts/{trace_id}").json()
        if view["state"] == state or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def check_out(serve: EmbeddedServe, email: str) -> dict:
    answer = httpx.post(f"{serve.url}/api/checkout", json=checkout_body(email=email), timeout=30)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_pay_link_from_before_a_restart_still_pays_and_settles(stack: EmbeddedServe) -> None:
    stack.start()
    before_stop = check_out(stack, "before-stop@example.com")
    stack.stop()  # Ctrl-C on `just serve`
    stack.start()
    before_kill = check_out(stack, "before-kill@example.com")
    stack.kill()  # a crash: nothing is flushed at exit
    stack.start()

    port = int((stack.data_dir / EMULATOR_PORT_FILE).read_text())
    links = [c["pay"]["session_url"] for c in (before_stop, before_kill)]
    assert [urlsplit(link).port for link in links] == [port, port]
    for link in links:
        paid = httpx.post(f"{link}/pay", data=pay_form(link), follow_redirects=False, timeout=10)
        assert paid.status_code == 303, paid.text

    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
        for checkout in (before_stop, before_kill):
            view = wait_for_state(http, checkout["checkout_trace_id"], "paid")
            assert view["state"] == "paid"
            assert (view["order"]["status"], view["job"]["status"]) == ("paid", "dispatchable")
            steps = http.get(f"/api/checkouts/{checkout['checkout_trace_id']}/timeline").json()
            [pay] = [s for s in steps["steps"] if s["event"] == "pay"]
            assert pay["detail"]["source"].startswith("webhook:evt_")  # the signed webhook

    reconcile = stack.cli("reconcile")
    assert reconcile.returncode == 0, reconcile.stderr
    doctor = stack.cli("doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["orders_missing_at_provider"]["status"] == "ok"  # asked, not skipped
    assert all(c["count"] == 0 for c in checks.values())
    assert "resource_missing" not in stack.log_path.read_text()


def test_a_taken_emulator_port_stops_the_start_naming_the_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = start_embedded_emulator(settings)
    first.stop()
    port_file = tmp_path / EMULATOR_PORT_FILE

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first.port))
        squatter.listen()
        with pytest.raises(StartupError, match=str(port_file)):
            start_embedded_emulator(settings)

    again = start_embedded_emulator(settings)
    try:
        assert again.port == first.port
        assert (tmp_path / EMULATOR_STATE_FILE).exists()
    finally:
        again.stop()


def test_a_damaged_port_file_is_named(tmp_path: Path) -> None:
    (tmp_path / EMULATOR_PORT_FILE).write_text("eighty\n")

    with pytest.raises(StartupError, match=EMULATOR_PORT_FILE):
        start_embedded_emulator(Settings(data_dir=tmp_path))
