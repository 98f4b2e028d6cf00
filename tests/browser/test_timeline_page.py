"""The timeline page in a real headless Chromium: what a person on call would see."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from servers import ServerProcess
from support import ADMIN_TOKEN, checkout_body, signed, stripe_event

pytestmark = pytest.mark.slow

# `H2S_UPDATE_SCREENSHOTS=1 just test tests/browser` refreshes the screenshots in docs/.
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def server(database_url, emulator, db, stripe, tmp_path):
    server = ServerProcess(
        database_url, emulator.base_url, tmp_path, H2S_RECONCILE_INTERVAL_S="0"
    ).start()
    yield server
    server.stop()


def paid_and_failed(server: ServerProcess, stripe) -> tuple[dict, dict]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        paid = http.post("/api/checkout", json=checkout_body()).json()
        session = stripe.complete_session(paid["pay"]["session_id"])
        body, headers = signed(stripe_event("checkout.session.completed", session))
        assert http.post("/api/stripe/webhook", content=body, headers=headers).status_code == 200
        stripe.faults.add("status", "POST /v1/checkout/sessions", status=429, retry_after=0)
        failed = http.post("/api/checkout", json=checkout_body(email="bo@example.com")).json()
        stripe.faults.clear()
        replay = http.post("/api/checkout", json=checkout_body())
        assert replay.headers["idempotent-replayed"] == "true"
    return paid, failed


def test_a_person_sees_what_happened_to_a_paid_and_a_failed_checkout(
    server, stripe, browser, tmp_path
):
    shots = DOCS if os.environ.get("H2S_UPDATE_SCREENSHOTS") else tmp_path
    paid, failed = paid_and_failed(server, stripe)
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone

    # Without the token: a sign-in form, and nothing about the checkout.
    page.goto(f"{server.url}/debug/checkouts/{paid['checkout_trace_id']}")
    assert page.locator("input[name=token]").is_visible()
    assert paid["order_id"] not in page.content()
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("text=Sign in")

    page.goto(f"{server.url}/debug/checkouts/{paid['checkout_trace_id']}")
    assert page.locator("[data-state]").inner_text() == "paid"
    text = page.locator("body").inner_text().lower()  # marks are shown in capitals
    for expected in (
        "pending_payment → job_queued",
        "job_queued → session_created",
        "session_created → paid",
        paid["order_id"],
        paid["job_id"],
        "Replayed the stored answer",
        "by webhook",  # who moved it to paid
        "signed in as bootstrap",
    ):
        assert expected.lower() in text, expected
    assert (
        page.locator("a", has_text="Stripe session").get_attribute("href")
        == (paid["pay"]["session_url"])
    )
    page.screenshot(path=str(shots / "timeline-paid.png"), full_page=True)

    # Found through the search box by the trace id a 502 answer carries.
    page.fill("input[name=q]", failed["checkout_trace_id"])
    page.click("text=Find")
    assert page.locator("[data-state]").inner_text() == "cleaned"
    failure = page.locator(".failure-box").inner_text()
    assert "payment_provider_error" in failure
    assert "429" in failure
    assert "job_queued → failed" in page.locator("body").inner_text()
    page.screenshot(path=str(shots / "timeline-failed.png"), full_page=True)

    # And by the customer's email.
    page.fill("input[name=q]", "BO@example.com")
    page.click("text=Find")
    assert failed["checkout_trace_id"] in page.content()
    assert "cleaned" in page.locator("body").inner_text()

    # Signing out ends the session: the page asks for a key again.
    page.click("text=Sign out")
    page.goto(f"{server.url}/debug/checkouts/{paid['checkout_trace_id']}")
    assert page.locator("input[name=token]").is_visible()
    assert paid["order_id"] not in page.content()
