"""Two `serve` in one data folder: the second joins the first's PostgreSQL and Stripe
emulator as another replica; stopping it leaves the first whole, and `doctor` tells the
truth about the provider before and after."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emulator_sdk import pay_form
from h2s_checkout.embedded_stack import (
    EMULATOR_ADMIN_TOKEN_FILE,
    EMULATOR_URL_FILE,
    WEBHOOK_SECRET_FILE,
)
from servers import EmbeddedServe
from support import checkout_body

pytestmark = pytest.mark.slow


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[tuple[EmbeddedServe, EmbeddedServe]]:
    first = EmbeddedServe(tmp_path / "data")
    second = EmbeddedServe(tmp_path / "data", log_name="serve-2.log")
    try:
        yield first, second
    finally:
        second.stop()
        first.close()


def pay_and_wait(serve: EmbeddedServe, email: str) -> dict:
    """A checkout made on ``serve``, paid on the hosted page, read back until paid."""
    made = httpx.post(f"{serve.url}/api/checkout", json=checkout_body(email=email), timeout=30)
    assert made.status_code == 201, made.text
    body = made.json()
    link = body["pay"]["session_url"]
    paid = httpx.post(f"{link}/pay", data=pay_form(link), follow_redirects=False, timeout=10)
    assert paid.status_code == 303, paid.text
    headers = {"Authorization": f"Bearer {serve.admin_token}"}
    deadline = time.monotonic() + 20
    while True:
        view = httpx.get(
            f"{serve.url}/api/checkouts/{body['checkout_trace_id']}", headers=headers, timeout=10
        ).json()
        if view["state"] == "paid" or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def doctor(serve: EmbeddedServe) -> tuple[int, dict, str]:
    done = serve.cli("doctor", "--json")
    return done.returncode, json.loads(done.stdout), done.stderr


def test_a_second_serve_joins_the_first_as_a_replica_and_leaves_it_whole(folder) -> None:
    first, second = folder
    first.start()
    url_file = first.data_dir / EMULATOR_URL_FILE
    emulator_url = url_file.read_text()
    second.start()

    joined_log = second.log_path.read_text()
    assert "stripe_emulator.joined" in joined_log
    assert "stripe_emulator.started" not in joined_log
    assert "embedded_postgres.attached" in joined_log
    assert "embedded_postgres.started" not in joined_log
    assert url_file.read_text() == emulator_url  # no second emulator over the same state
    for name in (EMULATOR_ADMIN_TOKEN_FILE, WEBHOOK_SECRET_FILE):
        assert stat.S_IMODE(os.stat(first.data_dir / name).st_mode) == 0o600

    on_first = pay_and_wait(first, "first@example.com")
    on_second = pay_and_wait(second, "second@example.com")
    assert (on_first["state"], on_second["state"]) == ("paid", "paid")
    # The second asks the same emulator: it sees its own session paid there.
    assert on_second["provider_session"]["payment_status"] == "paid"
    code, report, err = doctor(second)
    assert code == 0, (report, err)

    second.stop()

    assert url_file.read_text() == emulator_url  # the first's files stay
    after = pay_and_wait(first, "after@example.com")
    assert after["state"] == "paid"
    code, report, err = doctor(first)
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 0, (report, err)
    assert checks["orders_missing_at_provider"]["status"] == "ok"  # asked, not skipped
    assert checks["provider_sessions_without_live_order"]["status"] == "ok"


def test_doctor_exits_non_zero_when_the_folders_emulator_is_gone(folder) -> None:
    first, _ = folder
    first.start()
    pay_and_wait(first, "ana@example.com")
    first.kill()  # the emulator dies with it; its address file is left behind

    code, report, err = doctor(first)

    assert code == 1
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["orders_missing_at_provider"]["status"] == "error"
    assert "cannot reach the payment provider" in checks["orders_missing_at_provider"]["error"]
    assert "payment provider's checks did not run" in err

    # What the second serve did on its way out: the provider is then not even
    # named. Still not a clean bill.
    (first.data_dir / EMULATOR_URL_FILE).unlink()
    code, report, err = doctor(first)
    assert code == 1
    assert "payment provider's checks did not run" in err
