"""A customer pays (or cancels) on the hosted page and lands on our page, in a real Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from servers import ServerProcess
from support import WEBHOOK_SECRET, checkout_body

pytestmark = pytest.mark.slow

# `H2S_UPDATE_SCREENSHOTS=1 just test tests/browser` refreshes the screenshots in docs/.
DOCS = Path(__file__).resolve().parents[2] / "docs"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def shop(database_url, emulator, db, stripe, tmp_path):
    """The service as the embedded stack runs it: the emulator delivers its signed events
    to it, and its success and cancel URLs point at its own pages."""
    server = ServerProcess(database_url, emulator.base_url, tmp_path, H2S_RECONCILE_INTERVAL_S="0")
    server.env["PUBLIC_BASE_URL"] = server.url
    server.start()
    hooks = emulator.state.webhooks
    hooks.url, hooks.secret = f"{server.url}/api/stripe/webhook", WEBHOOK_SECRET
    yield server
    hooks.url = None
    server.stop()


def start_checkout(shop: ServerProcess, email: str) -> dict:
    answer = httpx.post(f"{shop.url}/api/checkout", json=checkout_body(email=email), timeout=30)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_paying_lands_on_a_page_that_turns_to_paid_when_stripe_confirms(
    shop, stripe, browser, tmp_path
):
    shots = DOCS if os.environ.get("H2S_UPDATE_SCREENSHOTS") else tmp_path
    order = start_checkout(shop, "ana@example.com")
    # Stripe may redirect before its event arrives: hold the event until the page is up.
    stripe.webhooks.hold()
    page = browser.new_page(viewport=PHONE)

    page.goto(order["pay"]["session_url"])
    page.click("#pay")
    page.wait_for_url(f"{shop.url}/checkout/success?**")

    assert f"session_id={order['pay']['session_id']}" in page.url
    badge = page.locator("[data-status]")
    assert badge.get_attribute("data-status") == "waiting"
    assert badge.inner_text() == "Waiting for confirmation"
    assert order["order_id"] in page.locator("[data-order]").inner_text()
    page.screenshot(path=str(shots / "return-waiting.png"), full_page=True)

    assert stripe.webhooks.release()  # the checkout.session.completed event goes out
    # No reload from here: the page refreshes itself until the payment is confirmed.
    page.locator("[data-status='paid']").wait_for(timeout=60_000)

    assert page.locator("h1").inner_text() == "Thank you"
    text = page.locator("body").inner_text()
    assert "TV wall mounting \u00d7 1" in text  # the multiplication sign
    assert "$149.00" in text
    assert "ana@example.com" not in page.content()
    page.screenshot(path=str(shots / "return-paid.png"), full_page=True)


def test_cancelling_lands_on_a_page_that_says_nothing_was_charged(shop, stripe, browser):
    order = start_checkout(shop, "bo@example.com")
    page = browser.new_page(viewport=PHONE)

    page.goto(order["pay"]["session_url"])
    page.click("text=Cancel")
    page.wait_for_url(f"{shop.url}/checkout/cancel?**")

    assert page.locator("h1").inner_text() == "Payment not completed"
    assert page.locator("[data-status]").inner_text() == "Not paid"
    assert order["order_id"] in page.locator("[data-order]").inner_text()
    assert "nothing was charged" in page.locator("body").inner_text()
