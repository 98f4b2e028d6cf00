"""The admin API answers only its token's holder and never shows the webhook secret."""

from collections.abc import Iterator

import httpx
import pytest
import stripe

from emulator_sdk import session_params
from stripe_checkout_emulator import EmulatorServer

SECRET = "whsec_admin_access_test"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(webhook_secret=SECRET, admin_token="emu_admin_given") as emulator:
        yield emulator


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_emulator/config"),
        ("POST", "/_emulator/config"),
        ("GET", "/_emulator/sessions"),
        ("POST", "/_emulator/sessions/{id}/complete"),
        ("POST", "/_emulator/sessions/{id}/events"),
        ("POST", "/_emulator/faults"),
        ("GET", "/_emulator/events"),
        ("POST", "/_emulator/reset"),
        ("GET", "/_emulator/requests"),
        ("GET", "/_emulator/nothing-here"),
    ],
)
@pytest.mark.parametrize("token", [None, "emu_admin_wrong", "sk_test_emulator"])
def test_without_the_admin_token_every_admin_route_is_401_and_changes_nothing(
    sdk: stripe.StripeClient, server: EmulatorServer, method: str, path: str, token: str | None
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    answer = httpx.request(
        method,
        server.base_url + path.format(id=session.id),
        json={"type": "checkout.session.completed", "webhook_url": "http://x.test/"},
        headers=headers,
        timeout=5,
    )

    assert answer.status_code == 401
    assert "admin token" in answer.json()["error"]
    assert SECRET not in answer.text
    assert sdk.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert server.state.webhooks.url is None


def test_with_the_token_the_config_says_a_secret_is_set_but_never_shows_it(
    server: EmulatorServer,
) -> None:
    admin = {"Authorization": f"Bearer {server.admin_token}"}

    config = httpx.get(f"{server.base_url}/_emulator/config", headers=admin, timeout=5)
    changed = httpx.post(
        f"{server.base_url}/_emulator/config", json={"latency_ms": 0}, headers=admin, timeout=5
    )
    health = httpx.get(f"{server.base_url}/_emulator/health", timeout=5)

    assert server.admin_token == "emu_admin_given"
    assert config.status_code == 200
    assert config.json()["webhook_secret_set"] is True
    assert SECRET not in config.text
    assert SECRET not in changed.text
    assert health.json() == {"ok": True}  # readiness needs no token and says nothing


def test_a_server_without_a_given_token_makes_its_own() -> None:
    first, second = EmulatorServer(), EmulatorServer()
    assert first.admin_token.startswith("emu_admin_")
    assert first.admin_token != second.admin_token
