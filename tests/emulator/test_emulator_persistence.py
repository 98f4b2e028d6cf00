"""The emulator's state file: what one emulator wrote, the next one on the file knows."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import stripe

from emulator_sdk import API_KEY, pay_form, session_params
from stripe_checkout_emulator import EmulatorServer, EmulatorState
from stripe_checkout_emulator.objects import LineItemSpec, SessionSpec
from stripe_checkout_emulator.statefile import DeliveryRow, StateFile, StateFileError
from stripe_checkout_emulator.webhooks import RetryPolicy
from webhook_receiver import Receiver

SECRET = "whsec_persistence_test"
FAST = RetryPolicy(base_s=0.05, max_attempts=3, timeout_s=2)
ADMIN_TOKEN = "emu_admin_persistence_test"
SRC = Path(__file__).parents[2] / "src"
COMPLETED = "checkout.session.completed"
EXPIRED = "checkout.session.expired"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "emulator.sqlite3"


@contextmanager
def emulator(path: Path, **options: object) -> Iterator[tuple[EmulatorServer, stripe.StripeClient]]:
    """An emulator on the state file, with a synchronous SDK client; stopped on exit."""
    options.setdefault("webhook_secret", SECRET)
    options.setdefault("webhook_retry", FAST)
    with EmulatorServer(state_path=path, **options) as server:  # type: ignore[arg-type]
        http_client = stripe.HTTPXClient(allow_sync_methods=True)
        client = stripe.StripeClient(
            API_KEY,
            base_addresses={"api": server.base_url},
            http_client=http_client,
            max_network_retries=0,
        )
        try:
            yield server, client
        finally:
            http_client.close()


def pay(session: stripe.checkout.Session, **form: str) -> None:
    answer = httpx.post(f"{session.url}/pay", data=pay_form(session.url, **form), timeout=5)
    assert answer.status_code == 303, answer.text


def stored_deliveries(path: Path) -> list[DeliveryRow]:
    store = StateFile(path)
    try:
        return store.deliveries()
    finally:
        store.close()


def spec(now: int, expires_in: int = 1800) -> SessionSpec:
    item = LineItemSpec(name="Gutter cleaning", currency="usd", unit_amount=1500, quantity=1)
    return SessionSpec("payment", [item], "https://shop.test/ok", now + expires_in)


def test_sessions_line_items_and_events_are_there_after_a_restart(path: Path) -> None:
    with emulator(path) as (server, sdk):
        paid = sdk.v1.checkout.sessions.create(session_params())
        pay(paid)
        open_one = sdk.v1.checkout.sessions.create(session_params(client_reference_id="o-2"))
        before = server.state.sessions
        events = server.state.events
        items = sdk.v1.checkout.sessions.line_items.list(paid.id).to_dict()["data"]

    with emulator(path) as (server, sdk):
        assert server.state.sessions == before
        assert server.state.events == events
        again = sdk.v1.checkout.sessions.retrieve(paid.id)
        listed = sdk.v1.checkout.sessions.list()
        assert sdk.v1.checkout.sessions.line_items.list(paid.id).to_dict()["data"] == items

    assert (again.status, again.payment_status) == ("complete", "paid")
    assert again.payment_intent == events[0]["data"]["object"]["payment_intent"]
    assert [s.id for s in listed.data] == [open_one.id, paid.id]  # newest first, as before
    assert [e["type"] for e in events] == [COMPLETED]


def test_an_idempotency_key_replays_the_first_answer_after_a_restart(path: Path) -> None:
    options = {"idempotency_key": "h2s-checkout-42-session"}
    with emulator(path) as (_, sdk):
        first = sdk.v1.checkout.sessions.create(session_params(), options)

    with emulator(path) as (server, sdk):
        again = sdk.v1.checkout.sessions.create(session_params(), options)
        with pytest.raises(stripe.IdempotencyError):
            sdk.v1.checkout.sessions.create(session_params(client_reference_id="other"), options)
        count = len(server.state.sessions)

    assert again.id == first.id
    assert again.last_response.headers["idempotent-replayed"] == "true"
    assert again.last_response.headers["original-request"] == first.last_response.request_id
    assert again.to_dict() == first.to_dict()
    assert count == 1


def test_an_answer_lost_on_the_way_back_is_replayed_by_the_next_process(path: Path) -> None:
    options = {"idempotency_key": "lost-answer"}
    with emulator(path) as (server, sdk):
        server.state.faults.add("drop", "POST /v1/checkout/sessions", processed=True, times=1)
        with pytest.raises(stripe.APIConnectionError):
            sdk.v1.checkout.sessions.create(session_params(), options)
        [made] = server.state.sessions

    with emulator(path) as (server, sdk):
        retried = sdk.v1.checkout.sessions.create(session_params(), options)
        count = len(server.state.sessions)

    assert retried.id == made["id"]
    assert count == 1


def test_undelivered_events_are_sent_by_the_next_process(path: Path) -> None:
    with Receiver() as first, emulator(path, webhook_url=first.url) as (server, sdk):
        session = sdk.v1.checkout.sessions.create(session_params())
        server.state.webhooks.hold()  # nothing leaves this process
        pay(session)
        [event] = server.state.events
    assert first.received == []

    with (
        Receiver() as endpoint,
        emulator(path, webhook_url=endpoint.url, webhook_secret="whsec_new"),
    ):
        [received] = endpoint.wait(1)

    delivered = stripe.Webhook.construct_event(
        received.body, received.headers["Stripe-Signature"], "whsec_new"
    )
    assert delivered.id == event["id"]
    assert delivered.type == COMPLETED
    assert delivered.data.object.id == session.id


def test_a_delivery_failing_when_stopped_resumes_its_retries(path: Path) -> None:
    slow = RetryPolicy(base_s=60, max_attempts=5, timeout_s=2)
    with (
        Receiver(statuses=[500]) as failing,
        emulator(path, webhook_url=failing.url, webhook_retry=slow) as (_, sdk),
    ):
        session = sdk.v1.checkout.sessions.create(session_params())
        pay(session)
        failing.wait(1)  # the first attempt failed; the next is a minute away
        deadline = time.monotonic() + 5
        while stored_deliveries(path)[0].attempt != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    [waiting] = stored_deliveries(path)
    assert waiting.attempt == 2
    assert waiting.due_at > time.time() + 30
    with sqlite3.connect(path) as db:  # the minute passes while the emulator is down
        db.execute("update deliveries set due_at = 0")

    with Receiver() as endpoint, emulator(path, webhook_url=endpoint.url) as (server, _):
        [received] = endpoint.wait(1)
        deadline = time.monotonic() + 5
        while not server.state.deliveries and time.monotonic() < deadline:
            time.sleep(0.01)
        [attempt] = server.state.deliveries

    assert received.event["id"] == waiting.event_id
    assert received.event["data"]["object"]["id"] == session.id
    assert (attempt.attempt, attempt.ok) == (2, True)
    assert stored_deliveries(path) == []


def test_a_delivery_done_is_not_sent_again_after_a_restart(path: Path) -> None:
    with Receiver() as endpoint:
        with emulator(path, webhook_url=endpoint.url) as (server, sdk):
            pay(sdk.v1.checkout.sessions.create(session_params()))
            endpoint.wait(1)
            deadline = time.monotonic() + 5
            while not server.state.webhooks.idle and time.monotonic() < deadline:
                time.sleep(0.01)
        with emulator(path, webhook_url=endpoint.url):
            time.sleep(0.3)  # a resumed delivery would go out at once
        assert len(endpoint.received) == 1
    assert stored_deliveries(path) == []


def test_sessions_that_expired_while_stopped_expire_with_their_event(path: Path) -> None:
    now = [1_800_000_000.0]
    first = EmulatorState(clock=lambda: now[0], state_path=path)
    session = first.create_session(spec(first.now()))
    first.close()

    now[0] += 3600  # the emulator was down for an hour
    second = EmulatorState(clock=lambda: now[0], state_path=path)
    second.sweep()

    [event] = second.events
    assert event["type"] == EXPIRED
    assert event["data"]["object"]["id"] == session["id"]
    assert second.get_session(session["id"])["status"] == "expired"  # type: ignore[index]
    second.close()


def test_a_delayed_payment_settles_after_a_restart(path: Path) -> None:
    now = [1_800_000_000.0]
    first = EmulatorState(clock=lambda: now[0], state_path=path)
    session = first.create_session(spec(first.now()))
    first.complete_session(session["id"], delayed=True, succeeds=True, delay_s=60)
    first.close()

    now[0] += 61
    second = EmulatorState(clock=lambda: now[0], state_path=path)
    second.sweep()

    assert [e["type"] for e in second.events] == [
        COMPLETED,
        "checkout.session.async_payment_succeeded",
    ]
    assert second.get_session(session["id"])["payment_status"] == "paid"  # type: ignore[index]
    second.close()


def test_the_advanced_clock_is_kept(path: Path) -> None:
    first = EmulatorState(state_path=path)
    first.advance_clock(7200)
    first.close()

    second = EmulatorState(state_path=path)

    assert second.now() >= int(time.time()) + 7200
    second.close()


def test_reset_empties_the_file(path: Path) -> None:
    with emulator(path) as (server, sdk):
        pay(sdk.v1.checkout.sessions.create(session_params()))
        server.state.reset()

    with emulator(path) as (server, _):
        assert server.state.sessions == []
        assert server.state.events == []


def test_a_file_of_another_format_is_refused_with_its_name(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("pragma user_version = 99")

    with pytest.raises(StateFileError, match=re.escape(str(path))):
        EmulatorState(state_path=path)


def test_without_a_state_path_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state = EmulatorState()
    state.create_session(spec(state.now()))

    assert state.store is None
    assert list(tmp_path.iterdir()) == []


def _start_process(path: Path) -> tuple[subprocess.Popen[str], str]:
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
            "--state",
            str(path),
            "--admin-token",
            ADMIN_TOKEN,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    match = re.search(r"listening on (http://\S+)", proc.stdout.readline())
    assert match
    return proc, match.group(1)


def test_the_command_line_state_survives_a_sigkill(path: Path) -> None:
    proc, url = _start_process(path)
    try:
        client = stripe.StripeClient(
            API_KEY,
            base_addresses={"api": url},
            http_client=stripe.HTTPXClient(allow_sync_methods=True),
            max_network_retries=0,
        )
        session = client.v1.checkout.sessions.create(session_params())
        pay(session)
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown code runs
        proc.wait(timeout=10)

    proc, url = _start_process(path)
    try:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        found = httpx.get(f"{url}/_emulator/sessions/{session.id}", headers=admin).json()
        events = httpx.get(f"{url}/_emulator/events", headers=admin).json()["events"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    assert (found["status"], found["payment_status"]) == ("complete", "paid")
    assert [e["type"] for e in events] == [COMPLETED]
