"""The pages Stripe sends the customer back to: what they show, and to whom."""

from __future__ import annotations

import re
import uuid
from html import escape
from urllib.parse import urlsplit

import httpx
import pytest

from emulator_sdk import pay_form
from h2s_checkout.api import customer_words
from h2s_checkout.domain.machine import CheckoutMachine
from support import DATA_TABLES, checkout_body, signed, stripe_event

SUCCESS, CANCEL = "/checkout/success", "/checkout/cancel"


async def checkout(client, **kwargs) -> dict:
    answer = await client.post("/api/checkout", json=checkout_body(**kwargs))
    assert answer.status_code == 201, answer.text
    return answer.json()


async def press(session_url: str, button: str) -> str:
    """Press Pay or Cancel on the emulator's hosted page; the path and query it sends to."""
    async with httpx.AsyncClient(timeout=10) as browser:
        form = pay_form(session_url) if button == "pay" else {}
        answer = await browser.post(
            f"{session_url}/{button}", data={**form, "email": "ana@example.com"}
        )
    assert answer.status_code == 303, answer.text
    location = urlsplit(answer.headers["location"])
    assert location.netloc == "shop.test"  # PUBLIC_BASE_URL in the test settings
    return f"{location.path}?{location.query}"


async def settle(client, stripe, session_id: str, event_type: str) -> None:
    session = stripe.get_session(session_id)
    body, headers = signed(stripe_event(event_type, session))
    answer = await client.post("/api/stripe/webhook", content=body, headers=headers)
    assert answer.status_code == 200, answer.text


def status_of(page: httpx.Response) -> str:
    found = re.search(r"data-status='([a-z_]+)'", page.text)
    assert found, page.text
    return found[1]


def refresh_of(page: httpx.Response) -> str | None:
    found = re.search(r'http-equiv=refresh content="([^"]*)"', page.text)
    return found[1] if found else None


async def test_the_session_returns_to_our_pages_keyed_on_what_stripe_fills(client, db, stripe):
    body = await checkout(client)

    session = stripe.get_session(body["pay"]["session_id"])

    order = body["order_id"]
    assert session["success_url"] == (
        f"http://shop.test{SUCCESS}?order_id={order}&session_id={{CHECKOUT_SESSION_ID}}"
    )
    assert session["cancel_url"] == f"http://shop.test{CANCEL}?order_id={order}"


async def test_paying_lands_on_a_page_that_waits_for_the_webhook_then_shows_paid(
    client, db, stripe
):
    body = await checkout(client, items=[{"sku": "tv-mount", "quantity": 2}])
    landing = await press(body["pay"]["session_url"], "pay")
    assert f"session_id={body['pay']['session_id']}" in landing  # Stripe filled it in

    waiting = await client.get(landing)
    assert waiting.status_code == 200
    assert status_of(waiting) == "waiting"
    assert body["order_id"] in waiting.text
    assert "TV wall mounting &times; 2" in waiting.text
    assert "$298.00" in waiting.text
    # It reloads itself, keeping its keys, until the payment is confirmed.
    refresh = refresh_of(waiting)
    assert refresh is not None
    delay, _, url = refresh.partition("; url=")
    assert int(delay) > 0
    assert f"session_id={body['pay']['session_id']}" in url
    assert status_of(await client.get(url.replace("&amp;", "&"))) == "waiting"

    await settle(client, stripe, body["pay"]["session_id"], "checkout.session.completed")

    paid = await client.get(landing)
    assert status_of(paid) == "paid"
    assert "<h1>Thank you</h1>" in paid.text
    assert refresh_of(paid) is None


async def test_the_pages_show_nothing_about_the_customer_or_the_trace(client, db, stripe):
    body = await checkout(client, name="Ana Quintero", phone="+15555550177")
    landing = await press(body["pay"]["session_url"], "pay")
    by_session = await client.get(landing)
    by_order = await client.get(SUCCESS, params={"order_id": body["order_id"]})
    cancelled = await client.get(CANCEL, params={"order_id": body["order_id"]})

    for page in (by_session, by_order, cancelled):
        assert page.status_code == 200
        for private in (
            "ana@example.com",
            "Ana Quintero",
            "5555550177",
            "1 Main St",
            "78701",
            body["checkout_trace_id"],
            body["job_id"],
            body["pay"]["session_url"],
        ):
            assert private not in page.text, private
        assert "<script" not in page.text
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in page.headers["content-security-policy"]
    # The order id alone (guessable) shows the status word and nothing of the order.
    assert status_of(by_order) == "waiting"
    assert "TV wall mounting" not in by_order.text
    assert "$149.00" not in by_order.text
    assert "TV wall mounting" not in cancelled.text


@pytest.mark.parametrize(
    "query",
    [
        "session_id=cs_test_a1NotASessionOfOurs",
        "session_id={CHECKOUT_SESSION_ID}",
        "order_id=ORD-0000000000000000",
        "order_id=not-an-order",
        "",
    ],
    ids=["unknown_session", "session_never_filled", "unknown_order", "malformed_order", "none"],
)
async def test_a_link_that_names_no_order_of_ours_is_a_404_page(client, db, stripe, query):
    await checkout(client)

    page = await client.get(f"{SUCCESS}?{query}")

    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "data-status" not in page.text


async def test_a_session_id_does_not_open_another_order(client, db, stripe):
    mine = await checkout(client, email="ana@example.com")
    theirs = await checkout(client, email="bo@example.com")

    page = await client.get(
        SUCCESS, params={"order_id": theirs["order_id"], "session_id": mine["pay"]["session_id"]}
    )

    assert page.status_code == 404
    assert theirs["order_id"] not in page.text
    assert mine["order_id"] not in page.text


async def test_cancelling_lands_on_a_page_that_says_nothing_was_charged(client, db, stripe):
    body = await checkout(client)

    landing = await press(body["pay"]["session_url"], "cancel")
    page = await client.get(landing)

    assert page.status_code == 200
    assert status_of(page) == "waiting"
    assert "nothing was charged" in page.text
    assert body["order_id"] in page.text
    assert refresh_of(page) is None

    stripe.expire_session(body["pay"]["session_id"])
    await settle(client, stripe, body["pay"]["session_id"], "checkout.session.expired")
    assert status_of(await client.get(landing)) == "expired"


async def test_service_names_are_escaped(client, db, stripe):
    await db.execute(
        "insert into h2s_service_catalog (sku, name, unit_amount_cents)"
        " values ('odd-job', '<b>Fan</b> & \"co\"', 1000)"
    )
    try:
        body = await checkout(client, items=[{"sku": "odd-job", "quantity": 1}])
        landing = await press(body["pay"]["session_url"], "pay")
        page = await client.get(landing)
    finally:
        # The catalogue outlives each test's data: take the odd service out again.
        await db.execute(f"truncate {', '.join(DATA_TABLES)} cascade")
        await db.execute("delete from h2s_service_catalog where sku = 'odd-job'")

    assert "&lt;b&gt;Fan&lt;/b&gt; &amp; &quot;co&quot; &times; 1" in page.text
    assert "<b>Fan" not in page.text


class TestAStorefrontsOwnPages:
    @pytest.fixture
    def settings(self, settings):
        return settings.with_overrides(
            success_url="https://shop.example/thanks/{ORDER_ID}?s={CHECKOUT_SESSION_ID}",
            cancel_url="https://shop.example/cart?cancelled={ORDER_ID}",
        )

    async def test_its_templates_are_filled_with_the_order_and_left_for_stripe(
        self, client, db, stripe
    ):
        body = await checkout(client)
        order = body["order_id"]

        session = stripe.get_session(body["pay"]["session_id"])
        assert session["success_url"] == (
            f"https://shop.example/thanks/{order}?s={{CHECKOUT_SESSION_ID}}"
        )
        assert session["cancel_url"] == f"https://shop.example/cart?cancelled={order}"

        async with httpx.AsyncClient(timeout=10) as browser:
            paid = await browser.post(
                f"{body['pay']['session_url']}/pay", data=pay_form(body["pay"]["session_url"])
            )
        assert paid.headers["location"] == (
            f"https://shop.example/thanks/{order}?s={body['pay']['session_id']}"
        )


# The machine's states, read from the class: a state added to it is walked here too.
MACHINE_STATES = [state.id for state in CheckoutMachine.states]


def test_every_state_of_the_machine_has_its_words_on_both_pages():
    assert set(customer_words.SUCCESS) == set(MACHINE_STATES)
    assert set(customer_words.CANCEL) == set(MACHINE_STATES)
    for words in (customer_words.SUCCESS, customer_words.CANCEL):
        for state, shown in words.items():
            assert all((shown.title, shown.label, shown.message)), state
            assert re.fullmatch("[a-z_]+", shown.key), state
    # A state the words do not know yet reads as a neutral word, never as an error.
    assert customer_words.on_success_page("a_state_added_later") is customer_words.UNKNOWN
    assert customer_words.on_cancel_page("a_state_added_later") is customer_words.UNKNOWN


@pytest.mark.parametrize("state", MACHINE_STATES)
async def test_both_pages_answer_every_state_with_its_word(client, db, stripe, state):
    body = await checkout(client)
    order, session = body["order_id"], body["pay"]["session_id"]
    await db.execute(
        "update h2s_checkouts set state = $2 where checkout_id = $1",
        uuid.UUID(body["checkout_trace_id"]),
        state,
    )

    pages = {
        "success, order and session": (
            customer_words.SUCCESS,
            await client.get(SUCCESS, params={"order_id": order, "session_id": session}),
        ),
        "success, session alone": (
            customer_words.SUCCESS,
            await client.get(SUCCESS, params={"session_id": session}),
        ),
        "success, order alone": (
            customer_words.SUCCESS,
            await client.get(SUCCESS, params={"order_id": order}),
        ),
        "cancel": (customer_words.CANCEL, await client.get(CANCEL, params={"order_id": order})),
        "cancel, with a session id": (
            customer_words.CANCEL,
            await client.get(CANCEL, params={"order_id": order, "session_id": session}),
        ),
    }

    for name, (words, page) in pages.items():
        assert page.status_code == 200, (name, page.text)
        assert page.headers["content-type"].startswith("text/html"), name
        assert status_of(page) == words[state].key, name
        assert f">{escape(words[state].label)}</span>" in page.text, name
        assert escape(words[state].message) in page.text, name


async def test_a_refunded_order_says_so_on_both_pages(client, db, stripe, admin):
    body = await checkout(client)
    landing = await press(body["pay"]["session_url"], "pay")
    await settle(client, stripe, body["pay"]["session_id"], "checkout.session.completed")
    cancelled = await client.post(
        f"/api/orders/{body['order_id']}/cancel",
        json={"reason": "requested_by_customer"},
        headers=admin,
    )
    assert cancelled.json()["state"] == "refunded", cancelled.text

    paid_page = await client.get(landing)
    cancel_page = await client.get(CANCEL, params={"order_id": body["order_id"]})

    for page in (paid_page, cancel_page):
        assert page.status_code == 200, page.text
        assert status_of(page) == "refunded"
        assert "your payment was refunded" in page.text
        assert refresh_of(page) is None
