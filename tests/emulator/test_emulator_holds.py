"""Manual capture on Checkout Sessions, driven through the official stripe SDK as the
service does: a hold at payment, a capture of all or part, a release (cancel), a lapse on
demand or at the card's capture_before; kept across restarts like the rest of the state."""

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from emulator_sdk import FIXTURES, make_client, make_http_client, pay_form, session_params
from stripe_checkout_emulator import EmulatorServer, EmulatorState
from stripe_checkout_emulator.objects import HOLD_SECONDS, LineItemSpec, SessionSpec

TOTAL = 2 * 1500 + 999  # session_params()'s amount_total
MANUAL = {"payment_intent_data": {"capture_method": "manual", "metadata": {"order_id": "o-1"}}}


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> Iterator[None]:
    server.state.reset()
    yield
    server.state.reset()


@pytest.fixture
async def sdk(server: EmulatorServer) -> AsyncIterator[stripe.StripeClient]:
    http_client = make_http_client("aiohttp", timeout=2.0)
    yield make_client(server.base_url, http_client)
    await http_client.close_async()


async def held_session(sdk: stripe.StripeClient, **params: Any) -> stripe.checkout.Session:
    session = await sdk.v1.checkout.sessions.create_async(session_params(**MANUAL, **params))
    paid = httpx.post(f"{session.url}/pay", data=pay_form(session.url), timeout=5)
    assert paid.status_code == 303, paid.text
    return await sdk.v1.checkout.sessions.retrieve_async(session.id)


def fixture_keys(resource: str) -> list[str]:
    return list(json.loads(FIXTURES.read_text())["resources"][resource])


async def test_a_manual_capture_session_holds_the_amount_and_says_unpaid(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    session = await held_session(sdk)
    intent = await sdk.v1.payment_intents.retrieve_async(session.payment_intent)
    charge = await sdk.v1.charges.retrieve_async(intent.latest_charge)

    # Stripe's shape: the session is complete but unpaid, as for a bank debit; the
    # intent tells a hold apart.
    assert (session.status, session.payment_status) == ("complete", "unpaid")
    assert (intent.status, intent.capture_method) == ("requires_capture", "manual")
    assert (intent.amount_capturable, intent.amount_received) == (TOTAL, 0)
    assert intent.metadata.to_dict() == {"order_id": "o-1"}  # payment_intent_data's
    assert (charge.captured, charge.amount_captured, charge.paid) == (False, 0, True)
    assert charge.payment_method_details.card.capture_before == intent.created + HOLD_SECONDS
    assert list(intent.last_response.data) == fixture_keys("payment_intent")
    assert [e["type"] for e in server.state.events] == [
        "payment_intent.amount_capturable_updated",
        "checkout.session.completed",
    ]


async def test_a_capture_of_part_takes_that_and_releases_the_rest(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    session = await held_session(sdk)
    pi = session.payment_intent

    captured = await sdk.v1.payment_intents.capture_async(
        pi, {"amount_to_capture": 2500}, {"idempotency_key": "h2s-capture-1"}
    )
    again = await sdk.v1.payment_intents.capture_async(
        pi, {"amount_to_capture": 2500}, {"idempotency_key": "h2s-capture-1"}
    )
    with pytest.raises(stripe.InvalidRequestError) as twice:
        await sdk.v1.payment_intents.capture_async(pi, {"amount_to_capture": 100})
    charge = await sdk.v1.charges.retrieve_async(captured.latest_charge)

    assert (captured.status, captured.amount_received, captured.amount_capturable) == (
        "succeeded",
        2500,
        0,
    )
    assert again.to_dict() == captured.to_dict()  # replayed, not captured twice
    assert (twice.value.http_status, twice.value.code) == (400, "payment_intent_unexpected_state")
    assert (charge.captured, charge.amount_captured, charge.amount) == (True, 2500, TOTAL)
    captures = [r for r in server.state.find_requests("POST /v1/payment_intents/*/capture")]
    assert [r.replayed for r in captures] == [False, True, False]
    assert [e["type"] for e in server.state.events][-2:] == [
        "payment_intent.succeeded",
        "charge.captured",
    ]


async def test_more_than_the_hold_is_refused_and_the_hold_stays(sdk: stripe.StripeClient) -> None:
    session = await held_session(sdk)

    with pytest.raises(stripe.InvalidRequestError) as too_large:
        await sdk.v1.payment_intents.capture_async(
            session.payment_intent, {"amount_to_capture": TOTAL + 1}
        )
    intent = await sdk.v1.payment_intents.retrieve_async(session.payment_intent)

    assert (too_large.value.code, too_large.value.param) == (
        "amount_too_large",
        "amount_to_capture",
    )
    assert (intent.status, intent.amount_capturable) == ("requires_capture", TOTAL)


async def test_refunds_take_at_most_what_was_captured(sdk: stripe.StripeClient) -> None:
    session = await held_session(sdk)
    pi = session.payment_intent
    with pytest.raises(stripe.InvalidRequestError) as uncaptured:
        await sdk.v1.refunds.create_async({"payment_intent": pi, "amount": 100})
    await sdk.v1.payment_intents.capture_async(pi, {"amount_to_capture": 3000})

    first = await sdk.v1.refunds.create_async({"payment_intent": pi, "amount": 1000})
    with pytest.raises(stripe.InvalidRequestError) as too_large:
        await sdk.v1.refunds.create_async({"payment_intent": pi, "amount": 2001})
    rest = await sdk.v1.refunds.create_async({"payment_intent": pi})
    charge = await sdk.v1.charges.retrieve_async(first.charge)

    assert uncaptured.value.code == "charge_not_refundable"
    assert too_large.value.code == "amount_too_large"
    assert (first.amount, rest.amount) == (1000, 2000)
    assert (charge.refunded, charge.amount_refunded, charge.amount_captured) == (True, 3000, 3000)


async def test_a_cancel_releases_the_hold_with_its_reason(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    session = await held_session(sdk)

    canceled = await sdk.v1.payment_intents.cancel_async(
        session.payment_intent, {"cancellation_reason": "requested_by_customer"}
    )
    with pytest.raises(stripe.InvalidRequestError) as capture_after:
        await sdk.v1.payment_intents.capture_async(session.payment_intent)
    with pytest.raises(stripe.InvalidRequestError) as bad_reason:
        await sdk.v1.payment_intents.cancel_async(
            session.payment_intent, {"cancellation_reason": "automatic"}
        )

    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "requested_by_customer")
    assert canceled.amount_capturable == 0
    assert canceled.canceled_at is not None
    assert capture_after.value.code == "payment_intent_unexpected_state"
    assert bad_reason.value.param == "cancellation_reason"
    [event] = [e for e in server.state.events if e["type"] == "payment_intent.canceled"]
    assert event["data"]["object"]["id"] == session.payment_intent


async def test_a_captured_payment_cannot_be_cancelled(sdk: stripe.StripeClient) -> None:
    session = await held_session(sdk)
    await sdk.v1.payment_intents.capture_async(session.payment_intent)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await sdk.v1.payment_intents.cancel_async(session.payment_intent)

    assert refused.value.code == "payment_intent_unexpected_state"
    assert "succeeded" in refused.value.user_message


async def test_a_lapse_on_demand_cancels_the_hold_automatically(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    session = await held_session(sdk)
    headers = {"Authorization": f"Bearer {server.admin_token}"}

    lapsed = httpx.post(
        f"{server.base_url}/_emulator/payment_intents/{session.payment_intent}/lapse",
        headers=headers,
        timeout=5,
    )
    again = httpx.post(
        f"{server.base_url}/_emulator/payment_intents/{session.payment_intent}/lapse",
        headers=headers,
        timeout=5,
    )
    intent = await sdk.v1.payment_intents.retrieve_async(session.payment_intent)

    assert lapsed.status_code == 200, lapsed.text
    assert again.status_code == 400
    assert (intent.status, intent.cancellation_reason) == ("canceled", "automatic")
    [event] = [e for e in server.state.events if e["type"] == "payment_intent.canceled"]
    assert event["data"]["object"]["cancellation_reason"] == "automatic"


async def test_an_automatic_capture_session_is_paid_as_before(sdk: stripe.StripeClient) -> None:
    session = await sdk.v1.checkout.sessions.create_async(session_params())
    httpx.post(f"{session.url}/pay", data=pay_form(session.url), timeout=5)
    paid = await sdk.v1.checkout.sessions.retrieve_async(session.id)
    intent = await sdk.v1.payment_intents.retrieve_async(paid.payment_intent)

    assert paid.payment_status == "paid"
    assert (intent.status, intent.amount_capturable) == ("succeeded", 0)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await sdk.v1.payment_intents.capture_async(paid.payment_intent)
    assert refused.value.code == "payment_intent_unexpected_state"


async def test_an_unknown_capture_method_is_refused(sdk: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await sdk.v1.checkout.sessions.create_async(
            session_params(payment_intent_data={"capture_method": "later"})
        )
    assert refused.value.param == "payment_intent_data[capture_method]"


def _spec(now: int) -> SessionSpec:
    return SessionSpec(
        mode="payment",
        line_items=[LineItemSpec(name="TV mount", currency="usd", unit_amount=5000, quantity=1)],
        success_url="https://shop.test/ok",
        expires_at=now + 3600,
        capture_method="manual",
    )


def test_a_hold_is_kept_across_a_restart_and_lapses_at_capture_before(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    now = [1_800_000_000.0]
    first = EmulatorState(clock=lambda: now[0], state_path=path)
    session = first.create_session(_spec(first.now()))
    second_session = first.create_session(_spec(first.now()))
    first.close()

    # The manual capture is remembered for a session created before the restart.
    second = EmulatorState(clock=lambda: now[0], state_path=path)
    held = second.complete_session(session["id"])
    other = second.complete_session(second_session["id"])
    second.capture_payment_intent(other["payment_intent"], 1000)
    second.close()

    now[0] += HOLD_SECONDS + 1  # a week later, the emulator down meanwhile
    third = EmulatorState(clock=lambda: now[0], state_path=path)
    third.sweep()

    intent = third.get_payment_intent(held["payment_intent"])
    captured = third.get_payment_intent(other["payment_intent"])
    assert intent is not None
    assert captured is not None
    assert (intent["status"], intent["cancellation_reason"]) == ("canceled", "automatic")
    assert (captured["status"], captured["amount_received"]) == ("succeeded", 1000)
    assert "payment_intent.canceled" in [e["type"] for e in third.events]
    third.close()
