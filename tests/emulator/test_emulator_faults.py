"""Fault injection: each fault kind reaches the official SDK as the matching exception."""

import os
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import stripe

from emulator_sdk import make_client, make_http_client, session_params
from stripe_checkout_emulator import EmulatorServer, FaultRule
from stripe_checkout_emulator.state import LATENCY_ENV

CREATE = "POST /v1/checkout/sessions"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    emulator = EmulatorServer(seed=7)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> Iterator[None]:
    server.state.reset()
    yield
    server.state.reset()


@pytest.fixture(params=["httpx", "aiohttp"])
async def sdk(
    request: pytest.FixtureRequest, server: EmulatorServer
) -> AsyncIterator[stripe.StripeClient]:
    # 1.5 s: well above the 0.3 s latency fault on a busy machine, well below the hang.
    http_client = make_http_client(request.param, timeout=1.5)
    yield make_client(server.base_url, http_client)
    await http_client.close_async()


@pytest.mark.parametrize(
    ("fault", "exception", "status"),
    [
        ({"kind": "status", "status": 500}, stripe.APIError, 500),
        ({"kind": "status", "status": 503}, stripe.APIError, 503),
        ({"kind": "status", "status": 429}, stripe.RateLimitError, 429),
        ({"kind": "status", "status": 400}, stripe.InvalidRequestError, 400),
        ({"kind": "timeout", "seconds": 6}, stripe.APIConnectionError, None),
        ({"kind": "drop"}, stripe.APIConnectionError, None),
    ],
)
async def test_fault_maps_to_sdk_exception(
    sdk: stripe.StripeClient,
    server: EmulatorServer,
    fault: dict,
    exception: type[Exception],
    status: int | None,
) -> None:
    server.state.faults.add(match=CREATE, times=1, **fault)

    started = time.monotonic()
    with pytest.raises(exception) as caught:
        await sdk.v1.checkout.sessions.create_async(session_params())
    elapsed = time.monotonic() - started
    after = await sdk.v1.checkout.sessions.create_async(session_params())

    assert type(caught.value) is exception
    assert caught.value.http_status == status
    if status is not None:
        assert caught.value.headers["request-id"].startswith("req_")
    if fault["kind"] == "timeout":
        assert 1.4 < elapsed < 5  # the client's 1.5 s timeout, not the 6 s hang
    # The fault hit once; the request never reached the API, so only the
    # follow-up created a session.
    assert after.status == "open"
    assert [s["id"] for s in server.state.sessions] == [after.id]


async def test_rate_limit_carries_retry_after(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    server.state.faults.add("status", CREATE, status=429, retry_after=7)

    with pytest.raises(stripe.RateLimitError) as caught:
        await sdk.v1.checkout.sessions.create_async(session_params())

    assert caught.value.headers["retry-after"] == "7"
    assert caught.value.json_body["error"]["code"] == "rate_limit"


async def test_error_body_can_be_overridden(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    server.state.faults.add(
        "status", CREATE, status=400, error={"code": "parameter_invalid", "param": "mode"}
    )

    with pytest.raises(stripe.InvalidRequestError) as caught:
        await sdk.v1.checkout.sessions.create_async(session_params())

    assert (caught.value.code, caught.value.param) == ("parameter_invalid", "mode")


async def test_latency_fault_delays_the_answer(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    server.state.faults.add("latency", CREATE, seconds=0.3)

    started = time.monotonic()
    await sdk.v1.checkout.sessions.create_async(session_params())

    assert time.monotonic() - started >= 0.3


async def test_path_patterns_select_requests(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    server.state.faults.add("status", "* /v1/checkout/sessions/*/expire", status=500)
    session = await sdk.v1.checkout.sessions.create_async(session_params())

    await sdk.v1.checkout.sessions.retrieve_async(session.id)
    with pytest.raises(stripe.APIError):
        await sdk.v1.checkout.sessions.expire_async(session.id)


def test_pattern_matching_rules() -> None:
    expire = FaultRule(kind="drop", match="* /v1/checkout/sessions/*/expire")
    anything = FaultRule(kind="drop")
    deep = FaultRule(kind="drop", match="GET|POST /v1/**")

    assert expire.matches("POST", "/v1/checkout/sessions/cs_test_1/expire")
    assert not expire.matches("POST", "/v1/checkout/sessions")
    assert anything.matches("GET", "/v1/checkout/sessions")
    assert deep.matches("get", "/v1/checkout/sessions/cs_1")
    assert not deep.matches("DELETE", "/v1/checkout/sessions/cs_1")


async def test_injected_500_is_not_stored_for_replay(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    server.state.faults.add("status", CREATE, status=500, times=1)
    options = {"idempotency_key": "retry-me"}

    with pytest.raises(stripe.APIError):
        await sdk.v1.checkout.sessions.create_async(session_params(), options)
    session = await sdk.v1.checkout.sessions.create_async(session_params(), options)

    assert session.status == "open"
    assert "idempotent-replayed" not in session.last_response.headers


async def test_sdk_retries_a_500_with_the_same_idempotency_key(server: EmulatorServer) -> None:
    server.state.faults.add("status", CREATE, status=500, times=1)
    http_client = make_http_client("httpx")
    client = make_client(server.base_url, http_client, retries=2)
    try:
        session = await client.v1.checkout.sessions.create_async(session_params())
    finally:
        await http_client.close_async()

    creates = server.state.find_requests(CREATE)
    assert [r.status for r in creates] == [500, 200]
    assert creates[0].idempotency_key == creates[1].idempotency_key
    assert [s["id"] for s in server.state.sessions] == [session.id]


@pytest.mark.parametrize("kind", ["drop", "timeout"])
async def test_processed_fault_loses_only_the_answer(
    sdk: stripe.StripeClient, server: EmulatorServer, kind: str
) -> None:
    server.state.faults.add(kind, CREATE, times=1, processed=True, seconds=1)
    options = {"idempotency_key": "lost-answer"}

    with pytest.raises(stripe.APIConnectionError):
        await sdk.v1.checkout.sessions.create_async(session_params(), options)
    created = server.state.sessions
    retried = await sdk.v1.checkout.sessions.create_async(session_params(), options)

    assert [s["id"] for s in created] == [retried.id]
    assert retried.last_response.headers.get("idempotent-replayed") == "true"
    assert len(server.state.sessions) == 1


async def test_probability_is_reproducible_with_a_seed(server: EmulatorServer) -> None:
    def hits(seed: int) -> list[bool]:
        server.state.reset()
        server.state.faults.seed(seed)
        rule = server.state.faults.add("status", CREATE, status=500, probability=0.5)
        return [
            server.state.faults.pick("POST", "/v1/checkout/sessions") is rule for _ in range(40)
        ]

    first, again = hits(11), hits(11)

    assert first == again
    assert 5 < sum(first) < 35


async def test_global_latency_applies_to_every_api_request() -> None:
    emulator = EmulatorServer(latency_ms=200)
    url = emulator.start()
    http_client = make_http_client("httpx")
    try:
        client = make_client(url, http_client)
        started = time.monotonic()
        await client.v1.checkout.sessions.list_async()
        assert time.monotonic() - started >= 0.2
    finally:
        await http_client.close_async()
        emulator.stop()


def test_global_latency_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LATENCY_ENV, "35")

    assert EmulatorServer().state.latency_ms == 35
    assert EmulatorServer(latency_ms=5).state.latency_ms == 5
    monkeypatch.delenv(LATENCY_ENV)
    assert os.environ.get(LATENCY_ENV) is None
    assert EmulatorServer().state.latency_ms == 0


async def test_admin_http_api_injects_lists_and_clears_faults(
    sdk: stripe.StripeClient, server: EmulatorServer
) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as admin:
        added = await admin.post(
            "/_emulator/faults",
            json={"kind": "status", "match": CREATE, "status": 429, "times": 2},
        )
        listed = (await admin.get("/_emulator/faults")).json()["faults"]
        with pytest.raises(stripe.RateLimitError):
            await sdk.v1.checkout.sessions.create_async(session_params())
        cleared = await admin.delete("/_emulator/faults")
        session = await sdk.v1.checkout.sessions.create_async(session_params())
        bad = await admin.post("/_emulator/faults", json={"kind": "explode"})
        sessions = (await admin.get("/_emulator/sessions")).json()["sessions"]
        completed = await admin.post(f"/_emulator/sessions/{session.id}/complete", json={})
        reset = await admin.post("/_emulator/reset")

    assert added.status_code == 200
    assert added.json()["faults"][0]["id"] == listed[0]["id"]
    assert listed[0]["times"] == 2
    assert cleared.status_code == 200
    assert bad.status_code == 400
    assert [s["id"] for s in sessions] == [session.id]
    assert completed.json()["status"] == "complete"
    assert completed.json()["payment_status"] == "paid"
    assert reset.status_code == 200
    assert server.state.sessions == []
    assert server.state.requests == []
