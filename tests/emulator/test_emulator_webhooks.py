"""Webhook events of the emulator: shape, Stripe's signature, retries, expiry, faults, CLI."""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from emulator_sdk import FIXTURES, pay_form, session_params
from stripe_checkout_emulator import EmulatorServer, EmulatorState
from stripe_checkout_emulator.objects import LineItemSpec, SessionSpec
from stripe_checkout_emulator.webhooks import RetryPolicy, build_event, sign_payload
from webhook_receiver import Receiver

SECRET = "whsec_emulator_test_secret"
FAST = RetryPolicy(base_s=0.1, max_attempts=4, timeout_s=2)
SRC = Path(__file__).parents[2] / "src"
COMPLETED = "checkout.session.completed"
EXPIRED = "checkout.session.expired"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(webhook_secret=SECRET, webhook_retry=FAST, sweep_interval_s=0.05) as em:
        yield em


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> Iterator[None]:
    server.state.reset()
    server.state.webhooks.retry = FAST
    server.state.webhooks.secret = SECRET
    yield
    server.state.webhooks.url = None
    server.state.reset()


@pytest.fixture
def receiver(server: EmulatorServer) -> Iterator[Receiver]:
    with Receiver() as endpoint:
        server.state.webhooks.url = endpoint.url
        yield endpoint


@pytest.fixture
def http(server: EmulatorServer) -> Iterator[httpx.Client]:
    """The admin API's client, with its token (a pay POST carries the page's own)."""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(
        base_url=server.base_url, follow_redirects=False, timeout=5, headers=headers
    ) as client:
        yield client


def wait_until(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return result


def verified(received: Any) -> stripe.Event:
    return stripe.Webhook.construct_event(
        received.body, received.headers["Stripe-Signature"], SECRET
    )


def pay(http: httpx.Client, session: Any, **form: str) -> httpx.Response:
    response = http.post(f"{session.url}/pay", data=pay_form(session.url, **form))
    assert response.status_code == 303, response.text
    return response


def test_pay_sends_a_signed_completed_event(
    sdk: stripe.StripeClient, http: httpx.Client, receiver: Receiver, server: EmulatorServer
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())

    pay(http, session)
    [received] = receiver.wait(1)
    event = verified(received)

    assert received.headers["Content-Type"].startswith("application/json")
    assert received.headers["User-Agent"].startswith("Stripe/1.0")
    assert received.headers["Stripe-Signature"].startswith("t=")
    assert event.type == COMPLETED
    assert event.id.startswith("evt_")
    assert event.api_version == stripe.api_version
    assert event.livemode is False
    assert event.pending_webhooks == 1
    assert event.request.to_dict() == {"id": None, "idempotency_key": None}
    obj = event.data.object
    assert obj.id == session.id
    assert obj.object == "checkout.session"
    assert (obj.status, obj.payment_status) == ("complete", "paid")
    assert obj.customer_details.email == "jane@example.com"
    assert obj.payment_intent.startswith("pi_")
    assert obj.metadata.to_dict() == {"order_id": "order-123"}
    # Stripe sends pretty-printed JSON; the logged event is the same object.
    assert received.body.startswith(b'{\n  "id": "evt_')
    assert server.state.events == [json.loads(received.body)]
    deliveries = wait_until(lambda: server.state.deliveries)
    assert [(d.event_id, d.attempt, d.status, d.ok) for d in deliveries] == [
        (event.id, 1, 200, True)
    ]


def test_event_has_the_fixture_top_level_keys(
    sdk: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())
    pay(http, session)
    [received] = receiver.wait(1)

    fixture_event = json.loads(FIXTURES.read_text())["resources"]["event"]

    assert set(received.event) == set(fixture_event)


def test_a_failing_endpoint_is_retried_with_growing_delays(
    sdk: stripe.StripeClient, http: httpx.Client, server: EmulatorServer
) -> None:
    config = http.post("/_emulator/config", json={"webhook_retry": {"base_s": 0.2}})
    assert config.json()["webhook_retry"]["base_s"] == 0.2
    session = sdk.v1.checkout.sessions.create(session_params())

    with Receiver(statuses=[500, 500]) as endpoint:
        server.state.webhooks.url = endpoint.url
        pay(http, session)
        received = endpoint.wait(3)
        deliveries = wait_until(
            lambda: (
                (d := http.get("/_emulator/deliveries").json()["deliveries"]) and len(d) == 3 and d
            )
        )

    assert [r.status for r in received] == [500, 500, 200]
    assert len({r.event["id"] for r in received}) == 1
    for r in received:
        verified(r)  # each attempt is signed afresh
    assert [(d["attempt"], d["status"], d["ok"]) for d in deliveries] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert [d["delay_s"] for d in deliveries] == [0.0, 0.2, 0.4]
    assert deliveries[0]["error"] == "HTTP 500"
    assert deliveries[2]["error"] is None
    first_gap = received[1].at - received[0].at
    second_gap = received[2].at - received[1].at
    assert 0.2 <= first_gap < second_gap
    assert second_gap >= 0.4


def test_delivery_gives_up_after_max_attempts(
    sdk: stripe.StripeClient, http: httpx.Client, server: EmulatorServer
) -> None:
    http.post("/_emulator/config", json={"webhook_retry": {"base_s": 0.01, "max_attempts": 3}})
    # A closed port: connection refused, recorded as an error without a status.
    with Receiver() as gone:
        url = gone.url
    server.state.webhooks.url = url
    session = sdk.v1.checkout.sessions.create(session_params())

    pay(http, session)
    wait_until(lambda: server.state.webhooks.idle and server.state.deliveries)
    time.sleep(0.1)  # no fourth attempt comes

    deliveries = server.state.deliveries
    assert [d.attempt for d in deliveries] == [1, 2, 3]
    assert all(d.status is None and d.error and not d.ok for d in deliveries)


def test_expire_api_call_sends_an_expired_event_naming_the_request(
    sdk: stripe.StripeClient, receiver: Receiver
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())

    expired = sdk.v1.checkout.sessions.expire(session.id)
    event = verified(receiver.wait(1)[0])

    assert event.type == EXPIRED
    assert event.data.object.id == session.id
    assert event.data.object.status == "expired"
    assert event.request.id == expired.last_response.request_id


def test_advancing_the_clock_past_expires_at_sends_an_expired_event(
    sdk: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    expiring = sdk.v1.checkout.sessions.create(session_params(expires_at=int(time.time()) + 3600))
    later = sdk.v1.checkout.sessions.create(session_params())

    http.post("/_emulator/config", json={"advance_clock": 3601})
    [received] = receiver.wait(1)
    time.sleep(0.2)  # the sweeper does not expire the later one

    event = verified(received)
    assert event.type == EXPIRED
    assert event.data.object.id == expiring.id
    assert event.created >= expiring.expires_at  # on the emulator's clock
    assert len(receiver.received) == 1
    assert sdk.v1.checkout.sessions.retrieve(later.id).status == "open"


async def test_the_sweeper_expires_sessions_as_the_clock_runs() -> None:
    now = [1_800_000_000.0]
    state = EmulatorState(clock=lambda: now[0], sweep_interval_s=0.02)
    await state.start()
    try:
        item = LineItemSpec(name="Gutter cleaning", currency="usd", unit_amount=1500, quantity=1)
        spec = SessionSpec("payment", [item], "https://shop.test/ok", state.now() + 1800)
        session = state.create_session(spec)
        now[0] = session["expires_at"] + 1  # time passes; nobody reads the session
        for _ in range(100):
            if state.events:
                break
            await asyncio.sleep(0.01)
    finally:
        await state.stop()

    [event] = state.events
    assert event["type"] == EXPIRED
    assert event["data"]["object"]["id"] == session["id"]
    assert event["pending_webhooks"] == 0  # no endpoint configured
    assert state.deliveries == []


def test_delayed_payment_success_and_failure_events(
    sdk: stripe.StripeClient, http: httpx.Client, receiver: Receiver, server: EmulatorServer
) -> None:
    succeeding = sdk.v1.checkout.sessions.create(session_params())
    failing = sdk.v1.checkout.sessions.create(session_params())

    pay(http, succeeding, method="async", outcome="succeeded", delay="30")
    pay(http, failing, method="async", outcome="failed", delay="60")
    receiver.wait(2)
    server.state.advance_clock(61)
    received = receiver.wait(4)

    summary = [
        (e.type, e.data.object.id, e.data.object.payment_status) for e in map(verified, received)
    ]
    assert summary == [
        (COMPLETED, succeeding.id, "unpaid"),
        (COMPLETED, failing.id, "unpaid"),
        ("checkout.session.async_payment_succeeded", succeeding.id, "paid"),
        ("checkout.session.async_payment_failed", failing.id, "unpaid"),
    ]


def test_redeliver_sends_the_same_event_again(
    sdk: stripe.StripeClient, http: httpx.Client, receiver: Receiver, server: EmulatorServer
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())
    pay(http, session)
    first = receiver.wait(1)[0]

    redelivered = http.post(f"/_emulator/events/{first.event['id']}/redeliver")
    second = receiver.wait(2)[1]
    missing = http.post("/_emulator/events/evt_nope/redeliver")

    assert redelivered.status_code == 200
    assert second.body == first.body
    assert verified(second).id == first.event["id"]
    assert missing.status_code == 404
    reasons = wait_until(lambda: len(server.state.deliveries) == 2 and server.state.deliveries)
    assert [d.reason for d in reasons] == ["event", "redeliver"]


def test_duplicate_fault_delivers_an_event_twice(
    sdk: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    added = http.post(
        "/_emulator/webhooks/faults", json={"kind": "duplicate", "type": COMPLETED, "times": 1}
    )
    assert added.status_code == 200, added.text
    first = sdk.v1.checkout.sessions.create(session_params())
    second = sdk.v1.checkout.sessions.create(session_params())

    pay(http, first)
    pay(http, second)
    receiver.wait(3)
    time.sleep(0.1)

    ids = [e["data"]["object"]["id"] for e in receiver.events()]
    assert ids == [first.id, first.id, second.id]
    assert receiver.events()[0]["id"] == receiver.events()[1]["id"]


def test_delay_fault_lets_a_later_event_overtake(
    sdk: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    http.post(
        "/_emulator/webhooks/faults", json={"kind": "delay", "type": COMPLETED, "seconds": 0.3}
    )
    paid = sdk.v1.checkout.sessions.create(session_params())
    expiring = sdk.v1.checkout.sessions.create(session_params())

    pay(http, paid)
    sdk.v1.checkout.sessions.expire(expiring.id)
    receiver.wait(2)

    assert [e["type"] for e in receiver.events()] == [EXPIRED, COMPLETED]


def test_hold_and_release_in_reverse_order(
    sdk: stripe.StripeClient, http: httpx.Client, receiver: Receiver, server: EmulatorServer
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())
    http.post("/_emulator/webhooks/hold")
    pay(http, session, method="async")
    http.post(
        f"/_emulator/sessions/{session.id}/events",
        json={"type": "checkout.session.async_payment_succeeded"},
    )
    time.sleep(0.1)
    assert receiver.received == []
    assert not server.state.webhooks.idle

    released = http.post("/_emulator/webhooks/release", json={"order": "reverse"}).json()
    receiver.wait(2)

    types = [e["type"] for e in receiver.events()]
    assert types == ["checkout.session.async_payment_succeeded", COMPLETED]
    assert released["released"] == [e["id"] for e in receiver.events()]


def test_events_and_deliveries_are_listed_over_http(
    sdk: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    a = sdk.v1.checkout.sessions.create(session_params())
    b = sdk.v1.checkout.sessions.create(session_params())
    pay(http, a)
    sdk.v1.checkout.sessions.expire(b.id)
    receiver.wait(2)

    events = http.get("/_emulator/events").json()["events"]
    only_b = http.get("/_emulator/events", params={"session": b.id}).json()["events"]
    completed = http.get("/_emulator/events", params={"type": COMPLETED}).json()["events"]
    one = http.get(f"/_emulator/events/{events[0]['id']}").json()
    deliveries = wait_until(
        lambda: len(d := http.get("/_emulator/deliveries").json()["deliveries"]) == 2 and d
    )
    for_b = http.get("/_emulator/deliveries", params={"event": only_b[0]["id"]}).json()

    assert [e["type"] for e in events] == [COMPLETED, EXPIRED]
    assert [e["data"]["object"]["id"] for e in only_b] == [b.id]
    assert [e["data"]["object"]["id"] for e in completed] == [a.id]
    assert one == events[0]
    assert {d["event_id"] for d in deliveries} == {e["id"] for e in events}
    assert [d["type"] for d in for_b["deliveries"]] == [EXPIRED]
    assert http.get("/_emulator/events/evt_nope").status_code == 404


def test_webhook_endpoint_and_secret_are_configurable_over_http(
    sdk: stripe.StripeClient, http: httpx.Client, server: EmulatorServer
) -> None:
    with Receiver() as endpoint:
        config = http.post(
            "/_emulator/config", json={"webhook_url": endpoint.url, "webhook_secret": "whsec_other"}
        ).json()
        session = sdk.v1.checkout.sessions.create(session_params())
        pay(http, session)
        [received] = endpoint.wait(1)

    assert (config["webhook_url"], config["webhook_secret_set"]) == (endpoint.url, True)
    assert "whsec_other" not in json.dumps(config)
    stripe.Webhook.construct_event(
        received.body, received.headers["Stripe-Signature"], "whsec_other"
    )
    with pytest.raises(stripe.SignatureVerificationError):
        verified(received)
    bad = http.post("/_emulator/config", json={"webhook_retry": {"speed": 1}})
    assert bad.status_code == 400


def test_without_an_endpoint_events_are_only_logged(
    sdk: stripe.StripeClient, http: httpx.Client, server: EmulatorServer
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())
    pay(http, session)

    [event] = server.state.events
    assert event["type"] == COMPLETED
    assert event["pending_webhooks"] == 0
    assert server.state.deliveries == []
    assert http.post(f"/_emulator/events/{event['id']}/redeliver").status_code == 400


def test_send_event_rules(sdk: stripe.StripeClient, http: httpx.Client) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())
    path = f"/_emulator/sessions/{session.id}/events"

    expired = http.post(path, json={"type": EXPIRED})
    again = http.post(path, json={"type": COMPLETED})
    forced = http.post(path, json={"type": COMPLETED, "force": True})
    unknown = http.post(path, json={"type": "charge.succeeded", "force": True})
    no_type = http.post(path, json={})

    assert expired.status_code == 200
    assert expired.json()["event"]["type"] == EXPIRED
    assert again.status_code == 400
    assert forced.status_code == 200
    assert forced.json()["event"]["data"]["object"]["status"] == "expired"
    assert (unknown.status_code, no_type.status_code) == (400, 400)


def test_reset_forgets_events_deliveries_and_webhook_faults(
    sdk: stripe.StripeClient, http: httpx.Client, receiver: Receiver, server: EmulatorServer
) -> None:
    http.post("/_emulator/webhooks/faults", json={"kind": "duplicate"})
    http.post("/_emulator/webhooks/hold")
    pay(http, sdk.v1.checkout.sessions.create(session_params()))

    http.post("/_emulator/reset")

    assert server.state.events == []
    assert server.state.deliveries == []
    assert http.get("/_emulator/webhooks/faults").json()["faults"] == []
    assert http.get("/_emulator/webhooks").json() == {"holding": False, "idle": True}
    pay(http, sdk.v1.checkout.sessions.create(session_params()))
    assert len(receiver.wait(1)) == 1


def test_sign_payload_and_build_event_match_the_sdk() -> None:
    session = {"id": "cs_test_x", "object": "checkout.session", "status": "complete"}
    event = build_event(COMPLETED, session, created=1_700_000_000)
    body = json.dumps(event)

    header = sign_payload(body.encode(), SECRET, timestamp=1_700_000_000)
    fresh = sign_payload(body, SECRET)

    assert header == stripe.WebhookSignature.generate_signature_header(body, SECRET, 1_700_000_000)
    assert sign_payload(body, SECRET, 1_700_000_000) == header
    assert stripe.Webhook.construct_event(body, fresh, SECRET).data.object.id == "cs_test_x"
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(body, header, SECRET)  # signed long ago
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, fresh, "whsec_wrong")
    assert event["api_version"] == stripe.api_version
    assert event["request"] == {"id": None, "idempotency_key": None}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "stripe_checkout_emulator", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def test_send_event_command(
    sdk: stripe.StripeClient, receiver: Receiver, server: EmulatorServer, tmp_path: Path
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())
    token_file = tmp_path / "admin-token"
    token_file.write_text(server.admin_token + "\n")
    common = ["--emulator", server.base_url, "--session", session.id]
    with_token = [*common, "--admin-token", server.admin_token]

    tokenless = _cli("send-event", "--type", COMPLETED, *common)
    wrong = _cli("send-event", "--type", COMPLETED, *common, "--admin-token", "emu_admin_x")
    sent = _cli("send-event", "--type", COMPLETED, *with_token, "--email", "cli@example.com")
    refused = _cli("send-event", "--type", EXPIRED, *with_token)
    event = verified(receiver.wait(1)[0])
    redelivered = _cli(
        "redeliver", "--emulator", server.base_url, "--admin-token-file", str(token_file), event.id
    )

    assert tokenless.returncode == 2
    assert "needs --admin-token" in tokenless.stderr
    assert (wrong.returncode, "HTTP 401" in wrong.stderr) == (1, True)
    assert sent.returncode == 0, sent.stderr
    printed = json.loads(sent.stdout)
    assert (printed["type"], printed["id"]) == (COMPLETED, event.id)
    assert event.data.object.customer_details.email == "cli@example.com"
    assert sdk.v1.checkout.sessions.retrieve(session.id).status == "complete"
    assert refused.returncode == 1
    assert "HTTP 400" in refused.stderr
    assert redelivered.returncode == 0, redelivered.stderr
    assert [r.event["id"] for r in receiver.wait(2)] == [event.id, event.id]
