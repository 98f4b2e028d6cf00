"""Where events may never go: this service, its payment provider (the emulator's admin
API once paid an order for whoever subscribed it), and loopback or metadata addresses
written in the IPv4 forms a resolver takes but `ipaddress` does not."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from events_receiver import EventReceiver
from h2s_checkout.bootstrap import reserved_targets
from h2s_checkout.domain.events import new_secret
from h2s_checkout.flows.event_delivery import DeliverySettings, EventDeliverer, GuardedResolver
from h2s_checkout.store import outbox
from support import checkout_body

ENDPOINTS = "/api/event-endpoints"


@pytest.fixture(params=[True, False], ids=["private-allowed", "private-refused"])
def settings(request, settings):
    return settings.with_overrides(events_allow_private=request.param, events_timeout_s=1.0)


async def checkout(client, email: str = "ana@example.com") -> dict:
    answer = await client.post("/api/checkout", json=checkout_body(email=email))
    assert answer.status_code == 201, answer.text
    return answer.json()


async def refused(client, admin, url: str) -> str:
    answer = await client.post(ENDPOINTS, json={"url": url}, headers=admin)
    assert answer.status_code == 400, (url, answer.text)
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    return str(error["message"])


async def test_the_ssrf_request_from_the_issue_is_400_and_no_order_changes(
    client, admin, db, stripe, emulator, settings
):
    made = await checkout(client)
    session_id = made["pay"]["session_id"]
    port = urlsplit(emulator.base_url).port

    for url in (
        f"http://127.0.0.1:{port}/_emulator/sessions/{session_id}/complete",
        f"http://localhost:{port}/_emulator/sessions/{session_id}/complete",
        f"http://127.1:{port}/c/pay/{session_id}/pay",
        f"http://[::ffff:127.0.0.1]:{port}/",
    ):
        assert "payment provider" in await refused(client, admin, url)

    assert await db.fetchval("select count(*) from h2s_event_endpoints") == 0
    assert (
        await db.fetchval("select status from h2s_orders where order_id = $1", made["order_id"])
        == "pending_payment"  # unpaid
    )
    assert stripe.get_session(session_id)["status"] == "open"


async def test_the_services_own_address_is_refused_whatever_the_setting(client, admin, settings):
    own = settings.port
    for url in (
        f"http://127.0.0.1:{own}/api/checkout",
        f"http://localhost:{own}/",
        f"http://0x7f.1:{own}/",
        f"http://[::1]:{own}/",
        "http://shop.test/api/checkout",  # PUBLIC_BASE_URL
        "http://SHOP.test./",
    ):
        assert "this service's own address" in await refused(client, admin, url)


@pytest.mark.parametrize(
    "url", ["http://2130706433/", "http://127.1/", "http://0x7f.1/", "http://0177.0.0.1/"]
)
async def test_loopback_in_any_ipv4_form_is_refused(client, admin, settings, url):
    message = await refused(client, admin, url)
    if settings.events_allow_private:
        assert "is the IPv4 address 127.0.0.1: write it so" in message
    else:
        assert "private or loopback" in message


@pytest.mark.parametrize(
    "url", ["http://2852039166/", "http://0xa9fea9fe/latest/", "http://169.254.43518/"]
)
async def test_the_metadata_address_in_any_form_is_always_refused(client, admin, url):
    assert "metadata" in await refused(client, admin, url)


async def test_a_delivery_to_the_provider_is_never_sent_even_from_an_old_row(
    client, db, stripe, emulator, settings
):
    """Rows registered before the guard (or by hand) meet it again at delivery."""
    made = await checkout(client)
    session_id = made["pay"]["session_id"]
    url = f"{emulator.base_url}/_emulator/sessions/{session_id}/complete"
    await outbox.insert_endpoint(
        db, "ep_old", url=url, description="", event_types=["*"], secret=new_secret()
    )
    await checkout(client, "bo@example.com")  # an event for it to carry

    outcomes = await client.app.state.event_deliverer.run_once()

    assert set(outcomes) == {"retrying"}
    errors = await db.fetch("select error from h2s_event_attempts")
    assert errors
    assert all("payment provider" in e["error"] for e in errors)
    assert stripe.get_session(session_id)["status"] == "open"


async def test_a_loose_literal_from_an_old_row_is_never_sent(client, db, settings):
    """A loose literal is judged by our parser at delivery too, whatever this aiohttp
    version would make of it (3.14 refuses some, 3.13 sent them to 127.0.0.1)."""
    with EventReceiver() as receiver:
        await outbox.insert_endpoint(
            db,
            "ep_loose",
            url=f"http://2130706433:{receiver.port}/h2s",
            description="",
            event_types=["*"],
            secret=new_secret(),
        )
        await checkout(client)
        deliverer = EventDeliverer(
            settings.database_url or "",
            DeliverySettings(allow_private=settings.events_allow_private),
            listen_dsn=settings.database_url,
            clock=client.app.state.event_deliverer.clock,
        )
        try:
            outcomes = await deliverer.run_once()
        finally:
            await deliverer.close()
        assert outcomes == {"retrying": 1}
        assert receiver.snapshot() == []
    error = await db.fetchval("select error from h2s_event_attempts")
    assert error.startswith("url points at") or error.startswith("url's host 2130706433 is")


async def test_the_resolver_judges_literals_itself(settings):
    reserved = reserved_targets(settings)
    open_guard = GuardedResolver(allow_private=True, reserved=reserved)
    strict = GuardedResolver(allow_private=False, reserved=reserved)
    provider_port = urlsplit(settings.stripe_api_base).port

    [answer] = await open_guard.resolve("0x7f.1", 9)
    assert (answer["host"], answer["port"]) == ("127.0.0.1", 9)
    for guard in (open_guard, strict):
        for host, port in (("2852039166", 80), ("127.1", provider_port), ("localhost", 8000)):
            with pytest.raises(OSError, match="may not be sent to"):
                await guard.resolve(host, port)
    with pytest.raises(OSError, match="may not be sent to"):
        await strict.resolve("2130706433", 9)
