"""Refunds of paid sessions, driven through the official stripe SDK as the service will:
`client.v1.refunds.create_async(params, {"idempotency_key": ...})` and `retrieve_async`."""

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from emulator_sdk import FIXTURES, make_client, make_http_client, pay_form, session_params
from stripe_checkout_emulator import EmulatorServer, RefundRule
from stripe_checkout_emulator.webhooks import RetryPolicy
from webhook_receiver import Receiver

SECRET = "whsec_refund_tests"
REFUNDS = "POST /v1/refunds"
TOTAL = 2 * 1500 + 999  # session_params()'s amount_total


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    retry = RetryPolicy(base_s=0.05, max_attempts=3, timeout_s=2)
    with EmulatorServer(webhook_secret=SECRET, webhook_retry=retry) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> Iterator[None]:
    server.state.reset()
    yield
    server.state.webhooks.url = None
    server.state.reset()


@pytest.fixture
async def sdk(server: EmulatorServer) -> AsyncIterator[stripe.StripeClient]:
    # aiohttp, as the service's StripeGateway uses.
    http_client = make_http_client("aiohttp", timeout=1.0)
    yield make_client(server.base_url, http_client)
    await http_client.close_async()


@pytest.fixture
def receiver(server: EmulatorServer) -> Iterator[Receiver]:
    with Receiver() as endpoint:
        server.state.webhooks.url = endpoint.url
        yield endpoint


def fixture_keys(resource: str) -> list[str]:
    return list(json.loads(FIXTURES.read_text())["resources"][resource])


async def paid_session(sdk: stripe.StripeClient, **form: str) -> stripe.checkout.Session:
    session = await sdk.v1.checkout.sessions.create_async(session_params())
    paid = httpx.post(f"{session.url}/pay", data=pay_form(session.url, **form), timeout=5)
    assert paid.status_code == 303, paid.text
    return await sdk.v1.checkout.sessions.retrieve_async(session.id)


def verified(received: Any) -> stripe.Event:
    return stripe.Webhook.construct_event(
        received.body, received.headers["Stripe-Signature"], SECRET
    )


async def test_a_paid_session_has_a_payment_intent_and_charge_to_refund(
    sdk: stripe.StripeClient,
) -> None:
    session = await paid_session(sdk)

    intent = await sdk.v1.payment_intents.retrieve_async(session.payment_intent)
    charge = await sdk.v1.charges.retrieve_async(intent.latest_charge)

    assert session.payment_intent.startswith("pi_")
    assert (intent.status, intent.amount, intent.amount_received) == ("succeeded", TOTAL, TOTAL)
    assert intent.currency == charge.currency == "usd"
    assert (charge.status, charge.paid, charge.amount, charge.amount_refunded) == (
        "succeeded",
        True,
        TOTAL,
        0,
    )
    assert charge.payment_intent == intent.id
    assert list(intent.last_response.data) == fixture_keys("payment_intent")
    assert list(charge.last_response.data) == fixture_keys("charge")


async def test_a_refund_takes_what_is_left_and_has_the_fixture_keys(
    sdk: stripe.StripeClient,
) -> None:
    session = await paid_session(sdk)

    refund = await sdk.v1.refunds.create_async(
        {
            "payment_intent": session.payment_intent,
            "reason": "requested_by_customer",
            "metadata": {"order_id": "ORD-1", "checkout_trace_id": "t-1"},
        },
        {"idempotency_key": "h2s-refund-1"},
    )
    again = await sdk.v1.refunds.retrieve_async(refund.id)

    assert list(refund.last_response.data) == fixture_keys("refund")
    assert refund.id.startswith("re_")
    assert (refund.status, refund.amount, refund.currency) == ("succeeded", TOTAL, "usd")
    assert refund.payment_intent == session.payment_intent
    assert refund.reason == "requested_by_customer"
    assert refund.metadata.to_dict() == {"order_id": "ORD-1", "checkout_trace_id": "t-1"}
    assert again.to_dict() == refund.to_dict()


async def test_partial_refunds_until_nothing_is_left(sdk: stripe.StripeClient) -> None:
    session = await paid_session(sdk)
    pi = session.payment_intent

    first = await sdk.v1.refunds.create_async({"payment_intent": pi, "amount": 1000})
    with pytest.raises(stripe.InvalidRequestError) as too_large:
        await sdk.v1.refunds.create_async({"payment_intent": pi, "amount": TOTAL})
    rest = await sdk.v1.refunds.create_async({"charge": first.charge})
    with pytest.raises(stripe.InvalidRequestError) as already:
        await sdk.v1.refunds.create_async({"payment_intent": pi})
    charge = await sdk.v1.charges.retrieve_async(first.charge)

    assert (first.amount, rest.amount) == (1000, TOTAL - 1000)
    assert (too_large.value.http_status, too_large.value.code) == (400, "amount_too_large")
    assert too_large.value.param == "amount"
    assert "$29.99" in too_large.value.user_message  # what is left
    assert (already.value.http_status, already.value.code) == (400, "charge_already_refunded")
    assert (charge.refunded, charge.amount_refunded) == (True, TOTAL)
    assert [r.id for r in charge.refunds.data] == [rest.id, first.id]


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"payment_intent": "pi_nope"}, "payment_intent", "resource_missing"),
        ({"charge": "ch_nope"}, "charge", "resource_missing"),
        ({}, None, None),
        ({"amount": 0}, "amount", None),
        ({"reason": "changed_mind"}, "reason", None),
        ({"refund_everything": "true"}, "refund_everything", "parameter_unknown"),
    ],
)
async def test_bad_refund_requests_are_400_and_refund_nothing(
    sdk: stripe.StripeClient,
    server: EmulatorServer,
    params: dict[str, Any],
    param: str | None,
    code: str | None,
) -> None:
    session = await paid_session(sdk)
    if "payment_intent" not in params and "charge" not in params and params:
        params = {"payment_intent": session.payment_intent, **params}

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await sdk.v1.refunds.create_async(params)

    assert refused.value.http_status == 400
    assert (refused.value.param, refused.value.code) == (param, code)
    assert server.state.list_refunds() == []
    assert [e["type"] for e in server.state.events] == ["checkout.session.completed"]


async def test_an_unpaid_delayed_payment_cannot_be_refunded(sdk: stripe.StripeClient) -> None:
    session = await paid_session(sdk, method="async")

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await sdk.v1.refunds.create_async({"payment_intent": session.payment_intent})
    intent = await sdk.v1.payment_intents.retrieve_async(session.payment_intent)

    assert refused.value.code == "charge_not_refundable"
    assert intent.status == "processing"


async def test_a_delayed_payment_that_arrives_can_be_refunded(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    session = await paid_session(sdk, method="async")
    server.state.settle_async_payment(session.id, succeeded=True)

    refund = await sdk.v1.refunds.create_async({"payment_intent": session.payment_intent})

    assert (refund.status, refund.amount) == ("succeeded", TOTAL)


async def test_the_same_key_replays_the_refund_and_other_params_are_refused(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    session = await paid_session(sdk)
    params = {"payment_intent": session.payment_intent, "amount": 500}
    options = {"idempotency_key": "h2s-checkout-7-refund"}

    first = await sdk.v1.refunds.create_async(params, options)
    again = await sdk.v1.refunds.create_async(params, options)
    with pytest.raises(stripe.IdempotencyError) as other:
        await sdk.v1.refunds.create_async({**params, "amount": 600}, options)

    assert again.id == first.id
    assert again.last_response.headers["idempotent-replayed"] == "true"
    assert other.value.http_status == 400
    assert [r["id"] for r in server.state.list_refunds()] == [first.id]


async def test_a_refused_refund_is_replayed_under_its_key(sdk: stripe.StripeClient) -> None:
    session = await paid_session(sdk)
    params = {"payment_intent": session.payment_intent, "amount": TOTAL + 1}
    options = {"idempotency_key": "too-much"}

    with pytest.raises(stripe.InvalidRequestError):
        await sdk.v1.refunds.create_async(params, options)
    with pytest.raises(stripe.InvalidRequestError) as replayed:
        await sdk.v1.refunds.create_async(params, options)

    assert replayed.value.code == "amount_too_large"
    assert replayed.value.headers.get("idempotent-replayed") == "true"


async def test_refunds_are_listed_newest_first_by_payment_intent(
    sdk: stripe.StripeClient,
) -> None:
    one, other = await paid_session(sdk), await paid_session(sdk)
    first = await sdk.v1.refunds.create_async({"payment_intent": one.payment_intent, "amount": 100})
    await sdk.v1.refunds.create_async({"payment_intent": other.payment_intent})
    second = await sdk.v1.refunds.create_async({"payment_intent": one.payment_intent})

    listed = await sdk.v1.refunds.list_async({"payment_intent": one.payment_intent})
    page = await sdk.v1.refunds.list_async(
        {"payment_intent": one.payment_intent, "limit": 1, "starting_after": second.id}
    )

    assert [r.id for r in listed.data] == [second.id, first.id]
    assert ([r.id for r in page.data], page.has_more) == ([first.id], False)


async def test_refund_events_are_signed_and_carry_the_metadata(
    sdk: stripe.StripeClient, receiver: Receiver
) -> None:
    session = await paid_session(sdk)
    receiver.wait(1)

    refund = await sdk.v1.refunds.create_async(
        {"payment_intent": session.payment_intent, "metadata": {"order_id": "ORD-9"}},
        {"idempotency_key": "refund-ORD-9"},
    )
    created, refunded = (verified(r) for r in receiver.wait(3)[1:])

    assert created.type == "refund.created"
    assert created.data.object.id == refund.id
    assert created.data.object.metadata.to_dict() == {"order_id": "ORD-9"}
    assert created.request.idempotency_key == "refund-ORD-9"
    assert refunded.type == "charge.refunded"
    charge = refunded.data.object
    assert (charge.object, charge.id, charge.refunded, charge.amount_refunded) == (
        "charge",
        refund.charge,
        True,
        TOTAL,
    )
    assert [r.metadata.to_dict() for r in charge.refunds.data] == [{"order_id": "ORD-9"}]


async def test_a_pending_refund_fails_after_its_delay(
    sdk: stripe.StripeClient, server: EmulatorServer, receiver: Receiver
) -> None:
    session = await paid_session(sdk)
    rule = {"outcome": "failed", "delay_s": 3600, "failure_reason": "expired_or_canceled_card"}
    server.state.add_refund_rule(RefundRule.from_dict({**rule, "times": 1}))

    refund = await sdk.v1.refunds.create_async(
        {"payment_intent": session.payment_intent, "metadata": {"order_id": "ORD-2"}}
    )
    charge_while_pending = await sdk.v1.charges.retrieve_async(refund.charge)
    server.state.advance_clock(3601)
    events = [verified(r) for r in receiver.wait(5)[1:]]
    failed = await sdk.v1.refunds.retrieve_async(refund.id)
    charge = await sdk.v1.charges.retrieve_async(refund.charge)
    retried = await sdk.v1.refunds.create_async({"payment_intent": session.payment_intent})

    assert (refund.status, refund.pending_reason) == ("pending", "processing")
    assert charge_while_pending.amount_refunded == TOTAL
    assert [e.type for e in events] == [
        "refund.created",
        "charge.refunded",
        "refund.updated",
        "refund.failed",
    ]
    assert events[3].data.object.metadata.to_dict() == {"order_id": "ORD-2"}
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
    assert set(failed.last_response.data) == {
        *fixture_keys("refund"),
        "failure_reason",
        "failure_balance_transaction",
    }
    assert (charge.amount_refunded, charge.refunded) == (0, False)  # the money came back
    assert retried.status == "succeeded"  # the fault applied once


async def test_a_pending_refund_waits_for_the_admin_command(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    session = await paid_session(sdk)
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    admin = httpx.Client(base_url=server.base_url, timeout=5, headers=headers)
    fault = admin.post("/_emulator/refunds/faults", json={"outcome": "succeeded"}).json()

    refund = await sdk.v1.refunds.create_async({"payment_intent": session.payment_intent})
    server.state.advance_clock(86_400)
    still = await sdk.v1.refunds.retrieve_async(refund.id)
    bad = admin.post(
        f"/_emulator/refunds/{refund.id}/settle", json={"outcome": "failed", "failure_reason": "x"}
    )
    settled = admin.post(f"/_emulator/refunds/{refund.id}/settle", json={"outcome": "succeeded"})
    again = admin.post(f"/_emulator/refunds/{refund.id}/settle", json={"outcome": "failed"})
    done = await sdk.v1.refunds.retrieve_async(refund.id)
    admin.close()

    assert fault["faults"][0]["delay_s"] is None
    assert still.status == "pending"
    assert bad.status_code == 400
    assert settled.status_code == 200
    assert again.status_code == 400
    assert done.status == "succeeded"
    assert [e["type"] for e in server.state.events][-1] == "refund.updated"


async def test_refund_faults_are_validated_listed_and_cleared(server: EmulatorServer) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.base_url, timeout=5, headers=headers) as admin:
        bad = admin.post("/_emulator/refunds/faults", json={"outcome": "maybe"})
        added = admin.post("/_emulator/refunds/faults", json={"delay_s": 5}).json()["faults"]
        listed = admin.get("/_emulator/refunds/faults").json()["faults"]
        removed = admin.delete(f"/_emulator/refunds/faults/{added[0]['id']}")
        after = admin.get("/_emulator/refunds/faults").json()["faults"]

    assert bad.status_code == 400
    assert listed == added
    assert removed.status_code == 200
    assert after == []


@pytest.mark.parametrize(
    ("fault", "exception"),
    [
        ({"kind": "status", "status": 500}, stripe.APIError),
        ({"kind": "timeout", "seconds": 3}, stripe.APIConnectionError),
        ({"kind": "drop"}, stripe.APIConnectionError),
    ],
)
async def test_a_refund_call_that_fails_refunds_nothing(
    sdk: stripe.StripeClient,
    server: EmulatorServer,
    fault: dict[str, Any],
    exception: type[Exception],
) -> None:
    session = await paid_session(sdk)
    server.state.faults.add(match=REFUNDS, times=1, **fault)
    options = {"idempotency_key": "refund-after-fault"}

    with pytest.raises(exception):
        await sdk.v1.refunds.create_async({"payment_intent": session.payment_intent}, options)
    assert server.state.list_refunds() == []
    retried = await sdk.v1.refunds.create_async({"payment_intent": session.payment_intent}, options)

    assert "idempotent-replayed" not in retried.last_response.headers
    assert [r["id"] for r in server.state.list_refunds()] == [retried.id]


@pytest.mark.parametrize("kind", ["drop", "timeout"])
async def test_a_refund_processed_but_its_answer_lost_is_replayed(
    sdk: stripe.StripeClient, server: EmulatorServer, kind: str
) -> None:
    session = await paid_session(sdk)
    seconds = 2 if kind == "timeout" else 0  # past the client's 1 s timeout
    server.state.faults.add(kind, REFUNDS, times=1, processed=True, seconds=seconds)
    options = {"idempotency_key": "refund-lost-answer"}

    with pytest.raises(stripe.APIConnectionError):
        await sdk.v1.refunds.create_async({"payment_intent": session.payment_intent}, options)
    [made] = server.state.list_refunds()
    retried = await sdk.v1.refunds.create_async({"payment_intent": session.payment_intent}, options)

    assert retried.id == made["id"]
    assert retried.last_response.headers["idempotent-replayed"] == "true"
    assert len(server.state.list_refunds()) == 1


async def test_the_sdk_retries_a_lost_refund_answer_into_the_same_refund(
    server: EmulatorServer,
) -> None:
    http_client = make_http_client("aiohttp", timeout=1.0)
    client = make_client(server.base_url, http_client, retries=2)
    try:
        session = await paid_session(client)
        server.state.faults.add("drop", REFUNDS, times=1, processed=True)
        refund = await client.v1.refunds.create_async({"payment_intent": session.payment_intent})
    finally:
        await http_client.close_async()

    calls = server.state.find_requests(REFUNDS)
    assert [(r.status, r.fault, r.replayed) for r in calls] == [
        (None, "drop", False),
        (200, None, True),
    ]
    assert [r["id"] for r in server.state.list_refunds()] == [refund.id]


def test_refunds_and_their_pending_outcomes_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "emulator.sqlite3"
    with EmulatorServer(state_path=path) as first:
        client = make_client(first.base_url, stripe.HTTPXClient(allow_sync_methods=True))
        session = client.v1.checkout.sessions.create(session_params())
        httpx.post(f"{session.url}/pay", data=pay_form(session.url), timeout=5)
        pi = client.v1.checkout.sessions.retrieve(session.id).payment_intent
        done = client.v1.refunds.create({"payment_intent": pi, "amount": 999})
        first.state.add_refund_rule(RefundRule(outcome="failed", delay_s=60))
        pending = client.v1.refunds.create({"payment_intent": pi, "amount": 1000})

    with EmulatorServer(state_path=path) as second:
        client = make_client(second.base_url, stripe.HTTPXClient(allow_sync_methods=True))
        kept = [r.id for r in client.v1.refunds.list({"payment_intent": pi}).data]
        charge = client.v1.charges.retrieve(done.charge)
        with pytest.raises(stripe.InvalidRequestError) as too_large:
            client.v1.refunds.create({"payment_intent": pi, "amount": TOTAL})
        second.state.advance_clock(61)
        failed = client.v1.refunds.retrieve(pending.id)
        types = [e["type"] for e in second.state.events]

    assert kept == [pending.id, done.id]
    assert charge.amount_refunded == 999 + 1000
    assert too_large.value.code == "amount_too_large"
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
    assert types[-2:] == ["refund.updated", "refund.failed"]
