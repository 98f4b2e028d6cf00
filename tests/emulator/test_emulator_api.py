"""The emulator's checkout-session API, driven through the official stripe SDK."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import stripe

from emulator_sdk import (
    API_KEY,
    fixture_session_keys,
    make_client,
    make_http_client,
    session_params,
)
from stripe_checkout_emulator import EmulatorServer
from stripe_checkout_emulator.forms import decode_form
from stripe_checkout_emulator.objects import SESSION_KEYS


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    emulator = EmulatorServer()
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> Iterator[None]:
    server.state.reset()
    yield
    server.state.reset()


@pytest.fixture
async def sdk(server: EmulatorServer) -> AsyncIterator[stripe.StripeClient]:
    http_client = make_http_client("httpx")
    yield make_client(server.base_url, http_client)
    await http_client.close_async()


async def test_session_has_the_fixture_top_level_keys(sdk: stripe.StripeClient) -> None:
    session = await sdk.v1.checkout.sessions.create_async(session_params())
    raw = session.last_response.data

    assert list(raw) == fixture_session_keys()
    assert list(SESSION_KEYS) == fixture_session_keys()


async def test_create_fills_the_session(sdk: stripe.StripeClient, server: EmulatorServer) -> None:
    before = int(time.time())
    session = await sdk.v1.checkout.sessions.create_async(session_params())

    assert session.id.startswith("cs_test_")
    assert session.object == "checkout.session"
    assert session.amount_subtotal == session.amount_total == 2 * 1500 + 999
    assert session.currency == "usd"
    assert session.client_reference_id == "order-123"
    assert session.customer_email == "jane@example.com"
    assert session.metadata.to_dict() == {"order_id": "order-123"}
    assert (session.mode, session.status, session.payment_status) == ("payment", "open", "unpaid")
    assert session.success_url.startswith("https://shop.test/success")
    assert session.cancel_url == "https://shop.test/cancel"
    assert session.url == f"{server.base_url}/c/pay/{session.id}"
    assert session.livemode is False
    assert before <= session.created <= int(time.time())
    assert session.expires_at - session.created == 24 * 3600
    assert session.last_response.headers["request-id"].startswith("req_")


async def test_retrieve_with_expanded_line_items(sdk: stripe.StripeClient) -> None:
    created = await sdk.v1.checkout.sessions.create_async(session_params())

    session = await sdk.v1.checkout.sessions.retrieve_async(created.id, {"expand": ["line_items"]})
    items = await sdk.v1.checkout.sessions.line_items.list_async(created.id)

    assert session.id == created.id
    assert [i.quantity for i in session.line_items.data] == [2, 1]
    assert [i.amount_total for i in items.data] == [3000, 999]
    assert items.data[0].description == "Gutter cleaning"
    assert items.data[0].price.unit_amount == 1500


async def test_retrieve_unknown_session_is_resource_missing(sdk: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await sdk.v1.checkout.sessions.retrieve_async("cs_test_nope")

    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert "No such checkout.session: 'cs_test_nope'" in caught.value.user_message


async def test_expire_open_session_then_refuse_a_second_time(sdk: stripe.StripeClient) -> None:
    created = await sdk.v1.checkout.sessions.create_async(session_params())

    expired = await sdk.v1.checkout.sessions.expire_async(created.id)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await sdk.v1.checkout.sessions.expire_async(created.id)

    assert (expired.status, expired.url) == ("expired", None)
    assert caught.value.http_status == 400
    assert caught.value.json_body["error"]["type"] == "invalid_request_error"


async def test_session_expires_by_itself_at_expires_at(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    created = await sdk.v1.checkout.sessions.create_async(session_params())

    server.state.advance_clock(24 * 3600 + 1)
    session = await sdk.v1.checkout.sessions.retrieve_async(created.id)

    assert session.status == "expired"


async def test_list_is_newest_first_with_cursor_pagination(sdk: stripe.StripeClient) -> None:
    ids = [(await sdk.v1.checkout.sessions.create_async(session_params())).id for _ in range(3)]

    first = await sdk.v1.checkout.sessions.list_async({"limit": 2})
    second = await sdk.v1.checkout.sessions.list_async(
        {"limit": 2, "starting_after": first.data[-1].id}
    )
    every = [s.id async for s in first.auto_paging_iter()]

    assert first.object == "list"
    assert first.url == "/v1/checkout/sessions"
    assert [s.id for s in first.data] == ids[::-1][:2]
    assert first.has_more is True
    assert [s.id for s in second.data] == ids[:1]
    assert second.has_more is False
    assert every == ids[::-1]


async def test_list_filters_by_status(sdk: stripe.StripeClient) -> None:
    kept = await sdk.v1.checkout.sessions.create_async(session_params())
    gone = await sdk.v1.checkout.sessions.create_async(session_params())
    await sdk.v1.checkout.sessions.expire_async(gone.id)

    open_ = await sdk.v1.checkout.sessions.list_async({"status": "open"})
    expired = await sdk.v1.checkout.sessions.list_async({"status": "expired"})

    assert [s.id for s in open_.data] == [kept.id]
    assert [s.id for s in expired.data] == [gone.id]


async def test_list_rejects_client_reference_id_as_stripe_does(
    sdk: stripe.StripeClient,
) -> None:
    # Stripe's list endpoint has no client_reference_id filter (nor has the
    # SDK's SessionListParams); the emulator must not accept what Stripe refuses.
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await sdk.v1.checkout.sessions.list_async({"client_reference_id": "order-123"})

    assert caught.value.param == "client_reference_id"


async def test_same_idempotency_key_replays_the_same_session(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    options = {"idempotency_key": "order-123-attempt-1"}

    first = await sdk.v1.checkout.sessions.create_async(session_params(), options)
    again = await sdk.v1.checkout.sessions.create_async(session_params(), options)

    assert again.id == first.id
    assert again.last_response.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.last_response.headers
    assert len(server.state.sessions) == 1


async def test_same_idempotency_key_with_other_params_is_an_idempotency_error(
    sdk: stripe.StripeClient,
) -> None:
    options = {"idempotency_key": "order-123-attempt-1"}
    await sdk.v1.checkout.sessions.create_async(session_params(), options)

    with pytest.raises(stripe.IdempotencyError) as caught:
        await sdk.v1.checkout.sessions.create_async(
            session_params(client_reference_id="order-999"), options
        )

    assert caught.value.http_status == 400
    assert "same parameters" in caught.value.user_message


async def test_idempotency_key_in_flight_is_a_409(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    server.state.faults.add("latency", "POST /v1/checkout/sessions", seconds=0.5, times=1)
    options = {"idempotency_key": "concurrent"}

    answers = await asyncio.gather(
        sdk.v1.checkout.sessions.create_async(session_params(), options),
        sdk.v1.checkout.sessions.create_async(session_params(), options),
        return_exceptions=True,
    )
    # Whichever reaches the emulator first holds the key (the slow one); under load
    # that is not always the first one sent.
    [session] = [a for a in answers if isinstance(a, stripe.checkout.Session)]
    [refused] = [a for a in answers if not isinstance(a, stripe.checkout.Session)]

    assert session.status == "open"
    # The SDK maps a 409 to APIError, not IdempotencyError (only 400/404 are).
    assert isinstance(refused, stripe.APIError)
    assert refused.http_status == 409
    assert refused.json_body["error"]["type"] == "idempotency_error"


async def test_validation_errors_are_not_stored_under_the_key(
    sdk: stripe.StripeClient,
) -> None:
    # Stripe saves results only once an endpoint began executing.
    options = {"idempotency_key": "fix-and-retry"}
    with pytest.raises(stripe.InvalidRequestError):
        await sdk.v1.checkout.sessions.create_async(session_params(mode=None), options)

    session = await sdk.v1.checkout.sessions.create_async(session_params(), options)

    assert session.status == "open"


async def test_endpoint_refusals_are_stored_and_replayed(sdk: stripe.StripeClient) -> None:
    created = await sdk.v1.checkout.sessions.create_async(session_params())
    await sdk.v1.checkout.sessions.expire_async(created.id)
    options = {"idempotency_key": "expire-again"}

    with pytest.raises(stripe.InvalidRequestError):
        await sdk.v1.checkout.sessions.expire_async(created.id, options=options)
    with pytest.raises(stripe.InvalidRequestError) as replayed:
        await sdk.v1.checkout.sessions.expire_async(created.id, options=options)

    assert replayed.value.headers.get("idempotent-replayed") == "true"


async def test_invalid_api_key_is_an_authentication_error(server: EmulatorServer) -> None:
    http_client = make_http_client("httpx")
    client = make_client(server.base_url, http_client, api_key="sk_live_not_for_tests")
    try:
        with pytest.raises(stripe.AuthenticationError) as caught:
            await client.v1.checkout.sessions.create_async(session_params())
    finally:
        await http_client.close_async()

    assert caught.value.http_status == 401
    assert caught.value.json_body["error"]["type"] == "invalid_request_error"


async def test_missing_api_key_is_401_with_stripe_error_json(server: EmulatorServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post("/v1/checkout/sessions", data={"mode": "payment"})

    assert response.status_code == 401
    assert response.headers["request-id"].startswith("req_")
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "did not provide an API key" in error["message"]
    assert server.state.sessions == []


async def test_every_api_answer_carries_a_request_id(server: EmulatorServer) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
        answers = [
            await http.get("/v1/checkout/sessions"),
            await http.get("/v1/checkout/sessions/cs_test_missing"),
            await http.post("/v1/checkout/sessions", data={"mode": "payment"}),
            await http.get("/v1/nothing/here"),
        ]

    assert [a.status_code for a in answers] == [200, 404, 400, 404]
    assert all(a.headers["request-id"].startswith("req_") for a in answers)
    assert all("error" in a.json() for a in answers[1:])
    assert answers[3].json()["error"]["message"].startswith("Unrecognized request URL")


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(10 * 60, False), (30 * 60, True), (24 * 3600, True), (25 * 3600, False)],
)
async def test_expires_at_must_be_30_minutes_to_24_hours_away(
    sdk: stripe.StripeClient, offset: int, accepted: bool
) -> None:
    params = session_params(expires_at=int(time.time()) + offset)

    if accepted:
        session = await sdk.v1.checkout.sessions.create_async(params)
        assert session.expires_at == params["expires_at"]
        return
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await sdk.v1.checkout.sessions.create_async(params)
    assert caught.value.http_status == 400
    assert caught.value.param == "expires_at"


def _line(**price_data: object) -> list[dict[str, object]]:
    data = {"currency": "usd", "unit_amount": 1000, "product_data": {"name": "Job"}}
    data.update(price_data)
    return [{"price_data": {k: v for k, v in data.items() if v is not None}, "quantity": 1}]


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"mode": None}, "mode"),
        ({"mode": "refund"}, "mode"),
        ({"success_url": None}, "success_url"),
        ({"success_url": "not a url"}, "success_url"),
        ({"line_items": None}, "line_items"),
        ({"line_items": _line(currency=None)}, "line_items[0][price_data][currency]"),
        ({"line_items": _line(unit_amount=-1)}, "line_items[0][price_data][unit_amount]"),
        ({"line_items": _line(unit_amount="ten")}, "line_items[0][price_data][unit_amount]"),
        ({"line_items": _line(product_data={})}, "line_items[0][price_data]"),
        (
            {"line_items": [{"price_data": _line()[0]["price_data"], "quantity": 0}]},
            "line_items[0][quantity]",
        ),
        ({"line_items": [{"price_data": _line()[0]["price_data"]}]}, "line_items[0][quantity]"),
        ({"line_items": [{"price": "price_123", "quantity": 1}]}, "line_items[0][price]"),
        ({"customer_email": "nope"}, "customer_email"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_invalid_create_params_name_the_param(
    sdk: stripe.StripeClient, server: EmulatorServer, overrides: dict, param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await sdk.v1.checkout.sessions.create_async(session_params(**overrides))

    assert caught.value.http_status in (400, 404)
    assert caught.value.param == param
    assert server.state.sessions == []


async def test_requests_are_recorded_with_key_and_params(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    session = await sdk.v1.checkout.sessions.create_async(
        session_params(), {"idempotency_key": "k-1"}
    )
    await sdk.v1.checkout.sessions.retrieve_async(session.id)

    creates = server.state.find_requests("POST /v1/checkout/sessions")
    reads = server.state.find_requests("GET /v1/checkout/sessions/*")
    assert len(creates) == 1
    assert creates[0].idempotency_key == "k-1"
    assert creates[0].params["line_items"][0]["price_data"]["unit_amount"] == "1500"
    assert creates[0].params["metadata"] == {"order_id": "order-123"}
    assert creates[0].status == 200
    assert [r.path for r in reads] == [f"/v1/checkout/sessions/{session.id}"]
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
        logged = (await http.get("/_emulator/requests")).json()["requests"]
    assert [r["method"] for r in logged] == ["POST", "GET"]


def test_form_decoding_builds_nested_dicts_and_lists() -> None:
    decoded = decode_form(
        "mode=payment&metadata[order_id]=o-1&expand[]=a&expand[]=b"
        "&line_items[1][quantity]=2&line_items[0][quantity]=1"
        "&line_items[0][price_data][product_data][name]=A%20B"
    )

    assert decoded == {
        "mode": "payment",
        "metadata": {"order_id": "o-1"},
        "expand": ["a", "b"],
        "line_items": [
            {"quantity": "1", "price_data": {"product_data": {"name": "A B"}}},
            {"quantity": "2"},
        ],
    }
