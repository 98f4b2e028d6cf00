"""The hosted checkout page behind a session's url: render, pay, cancel, delayed payments."""

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import stripe

from emulator_sdk import session_params
from stripe_checkout_emulator import EmulatorServer
from stripe_checkout_emulator.access import pay_token
from stripe_checkout_emulator.hosted import format_amount


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(sweep_interval_s=0.05) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> Iterator[None]:
    server.state.reset()
    yield
    server.state.reset()


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, timeout=5) as client:
        yield client


def form(server: EmulatorServer, session_id: str, **fields: str) -> dict[str, str]:
    """What the page's form sends for this session: its pay token and ``fields``."""
    return {"pay_token": pay_token(server.admin_token, session_id), **fields}


def wait_until(check: Callable[[], Any], timeout: float = 3.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return result


def test_page_shows_line_items_total_and_buttons(
    sdk: stripe.StripeClient, browser: httpx.Client
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())

    page = browser.get(session.url)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "Gutter cleaning" in html
    assert "Call-out fee" in html
    assert "$15.00" in html
    assert "$30.00" in html
    assert "$9.99" in html
    assert '<td class="n" id="total">$39.99</td>' in html
    assert ">Pay $39.99</button>" in html
    assert ">Cancel</button>" in html
    assert 'value="jane@example.com" readonly' in html


def test_page_escapes_merchant_text(sdk: stripe.StripeClient, browser: httpx.Client) -> None:
    params = session_params()
    params["line_items"][0]["price_data"]["product_data"]["name"] = "<script>x</script>"
    session = sdk.v1.checkout.sessions.create(params)

    html = browser.get(session.url).text

    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html


def test_pay_completes_the_session_and_redirects_to_success_url(
    sdk: stripe.StripeClient, browser: httpx.Client, server: EmulatorServer
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())
    # The hidden field as a browser finds it on the page.
    token = re.search(r'name="pay_token" value="(\w+)"', browser.get(session.url).text)
    assert token is not None

    paid = browser.post(
        f"{session.url}/pay", data={"pay_token": token[1], "email": "jane@example.com"}
    )
    after = sdk.v1.checkout.sessions.retrieve(session.id)

    assert paid.status_code == 303
    assert paid.headers["location"] == f"https://shop.test/success?session_id={session.id}"
    assert (after.status, after.payment_status) == ("complete", "paid")
    assert after.payment_intent.startswith("pi_")
    assert after.customer_details.email == "jane@example.com"
    assert after.url is None
    # The template stays in the session; only the redirect fills it in.
    assert after.success_url.endswith("{CHECKOUT_SESSION_ID}")
    assert [e["type"] for e in server.state.events] == ["checkout.session.completed"]


def test_pay_takes_the_typed_email_when_the_session_has_none(
    sdk: stripe.StripeClient, browser: httpx.Client, server: EmulatorServer
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params(customer_email=None))
    assert 'name="email" placeholder' in browser.get(session.url).text

    browser.post(f"{session.url}/pay", data=form(server, session.id, email="typed@example.com"))

    assert sdk.v1.checkout.sessions.retrieve(session.id).customer_details.email == (
        "typed@example.com"
    )


def test_cancel_redirects_and_leaves_the_session_open(
    sdk: stripe.StripeClient, browser: httpx.Client, server: EmulatorServer
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())

    cancelled = browser.post(f"{session.url}/cancel")

    assert cancelled.status_code == 303
    assert cancelled.headers["location"] == "https://shop.test/cancel"
    assert sdk.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert server.state.events == []
    # Still payable afterwards, as on Stripe.
    assert browser.post(f"{session.url}/pay", data=form(server, session.id)).status_code == 303


def test_expired_complete_and_unknown_sessions_cannot_be_paid(
    sdk: stripe.StripeClient, browser: httpx.Client, server: EmulatorServer
) -> None:
    expired = sdk.v1.checkout.sessions.create(session_params())
    paid = sdk.v1.checkout.sessions.create(session_params())
    sdk.v1.checkout.sessions.expire(expired.id)
    browser.post(f"{paid.url}/pay", data=form(server, paid.id))

    pay_expired = browser.post(f"{expired.url}/pay", data=form(server, expired.id))
    pay_twice = browser.post(f"{paid.url}/pay", data=form(server, paid.id))
    page_expired = browser.get(expired.url)
    page_paid = browser.get(paid.url)
    unknown = browser.post(f"{server.base_url}/c/pay/cs_test_nope/pay", data=form(server, "x"))

    assert (pay_expired.status_code, pay_twice.status_code, unknown.status_code) == (410, 409, 404)
    assert "expired" in pay_expired.text
    assert "text/html" in pay_expired.headers["content-type"]
    assert "already complete" in pay_twice.text
    assert page_expired.status_code == 410
    assert page_paid.status_code == 200
    assert "complete" in page_paid.text
    assert sdk.v1.checkout.sessions.retrieve(expired.id).status == "expired"
    events = [e["type"] for e in server.state.events]
    assert events == ["checkout.session.expired", "checkout.session.completed"]


def test_a_session_past_expires_at_shows_the_expired_page(
    sdk: stripe.StripeClient, browser: httpx.Client, server: EmulatorServer
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())
    server.state.advance_clock(24 * 3600)

    assert browser.post(f"{session.url}/pay", data=form(server, session.id)).status_code == 410


def test_delayed_payment_settles_after_its_delay(
    sdk: stripe.StripeClient, browser: httpx.Client, server: EmulatorServer
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())

    paid = browser.post(
        f"{session.url}/pay",
        data=form(server, session.id, method="async", outcome="succeeded", delay="0.2"),
    )
    right_after = sdk.v1.checkout.sessions.retrieve(session.id)
    settled = wait_until(lambda: len(server.state.events) == 2 and server.state.events)

    assert paid.status_code == 303
    assert (right_after.status, right_after.payment_status) == ("complete", "unpaid")
    assert right_after.payment_intent.startswith("pi_")
    assert [(e["type"], e["data"]["object"]["payment_status"]) for e in settled] == [
        ("checkout.session.completed", "unpaid"),
        ("checkout.session.async_payment_succeeded", "paid"),
    ]
    assert sdk.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"


def test_delayed_payment_without_delay_waits_for_the_admin_command(
    sdk: stripe.StripeClient, browser: httpx.Client, server: EmulatorServer
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())
    browser.post(
        f"{session.url}/pay", data=form(server, session.id, method="async", outcome="failed")
    )
    server.state.advance_clock(3600)  # no delay given: time alone settles nothing
    assert len(server.state.events) == 1

    sent = browser.post(
        f"{server.base_url}/_emulator/sessions/{session.id}/events",
        json={"type": "checkout.session.async_payment_failed"},
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )

    assert sent.status_code == 200
    assert sent.json()["event"]["type"] == "checkout.session.async_payment_failed"
    after = sdk.v1.checkout.sessions.retrieve(session.id)
    assert (after.status, after.payment_status) == ("complete", "unpaid")
    assert [e["type"] for e in server.state.events] == [
        "checkout.session.completed",
        "checkout.session.async_payment_failed",
    ]


def test_pay_rejects_bad_form_values(
    sdk: stripe.StripeClient, browser: httpx.Client, server: EmulatorServer
) -> None:
    session = sdk.v1.checkout.sessions.create(session_params())

    assert (
        browser.post(f"{session.url}/pay", data=form(server, session.id, method="cash")).status_code
        == 400
    )
    assert (
        browser.post(
            f"{session.url}/pay", data=form(server, session.id, outcome="maybe")
        ).status_code
        == 400
    )
    assert (
        browser.post(f"{session.url}/pay", data=form(server, session.id, delay="soon")).status_code
        == 400
    )
    assert sdk.v1.checkout.sessions.retrieve(session.id).status == "open"


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [(3999, "usd", "$39.99"), (123456, "eur", "€1,234.56"), (500, "jpy", "JPY 500")],
)
def test_format_amount(amount: int, currency: str, shown: str) -> None:
    assert format_amount(amount, currency) == shown


def test_only_the_pages_own_form_pays(
    sdk: stripe.StripeClient, browser: httpx.Client, server: EmulatorServer
) -> None:
    """A POST that is not the page's form (the JSON an event delivery sends, a form
    without the page's token or with another session's) pays nothing."""
    session = sdk.v1.checkout.sessions.create(session_params())
    other = sdk.v1.checkout.sessions.create(session_params())

    as_json = browser.post(f"{session.url}/pay", json={"type": "order.created"})
    bare = browser.post(f"{session.url}/pay", data={"email": "x@example.com"})
    borrowed = browser.post(f"{session.url}/pay", data=form(server, other.id))
    in_query = browser.post(f"{session.url}/pay?pay_token={form(server, session.id)['pay_token']}")

    assert (as_json.status_code, bare.status_code, borrowed.status_code) == (415, 403, 403)
    assert in_query.status_code == 415  # no form body: not what the page sends
    assert sdk.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert server.state.events == []
