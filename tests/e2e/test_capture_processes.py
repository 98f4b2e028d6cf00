"""Pay on completion across real server processes: 20 completes over two replicas make one
capture, a crash between the capture call and its write still makes one, and a partial
refund's duplicate events change nothing."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from support import ADMIN_TOKEN, checkout_body, signed, stripe_event

pytestmark = pytest.mark.slow
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CAPTURES = "POST /v1/payment_intents/*/capture"
HELD = {"H2S_CAPTURE": "on_completion"}


def held_order(server_url: str, stripe) -> dict:
    body = httpx.post(f"{server_url}/api/checkout", json=checkout_body(), timeout=30).json()
    session = stripe.complete_session(body["pay"]["session_id"])
    content, headers = signed(stripe_event("checkout.session.completed", session))
    answer = httpx.post(f"{server_url}/api/stripe/webhook", content=content, headers=headers)
    assert answer.json()["result"] == "authorized", answer.text
    return body


def captures_made(stripe) -> list:
    """The captures Stripe made: one payment_intent.succeeded event each (a capture whose
    answer was lost on the way back was made all the same)."""
    return [e for e in stripe.events if e["type"] == "payment_intent.succeeded"]


async def test_twenty_completes_over_two_processes_make_one_capture(servers, db, stripe):
    first, second = servers(**HELD), servers(**HELD)
    body = held_order(first.url, stripe)
    url = f"/api/jobs/{body['job_id']}/complete"

    async with (
        httpx.AsyncClient(base_url=first.url, headers=ADMIN, timeout=30) as a,
        httpx.AsyncClient(base_url=second.url, headers=ADMIN, timeout=30) as b,
    ):
        answers = await asyncio.gather(
            *((a if n % 2 else b).post(url, json={"final_amount_cents": 9900}) for n in range(20))
        )

    for answer in answers:
        pending = answer.json()["state"] == "capture_pending"
        assert answer.status_code == (202 if pending else 200), answer.text
    assert len(captures_made(stripe)) == 1
    assert await db.fetchval("select count(*) from h2s_captures") == 1
    transitions = await db.fetchval(
        "select count(*) from h2s_checkout_traces where kind = 'transition'"
        " and event in ('complete_job', 'capture')"
    )
    assert transitions == 2
    assert await db.fetchval("select amount_paid_cents from h2s_orders") == 9900


async def test_a_crash_between_the_capture_call_and_its_write_still_captures_once(
    servers, db, stripe
):
    fast = {**HELD, "H2S_CHECKOUT_LEASE_S": "1", "H2S_RECONCILE_INTERVAL_S": "1"}
    server = servers(**fast)
    body = held_order(server.url, stripe)
    # Stripe captures, then holds its answer: the process dies before writing it.
    stripe.faults.add("timeout", CAPTURES, seconds=5, processed=True, times=1)

    async with httpx.AsyncClient(base_url=server.url, headers=ADMIN, timeout=30) as http:
        pending = asyncio.create_task(
            http.post(f"/api/jobs/{body['job_id']}/complete", json={"final_amount_cents": 8000})
        )
        deadline = time.monotonic() + 10
        while not stripe.find_requests(CAPTURES):
            assert time.monotonic() < deadline, "the capture call never reached the emulator"
            await asyncio.sleep(0.05)
        server.kill()
        with pytest.raises(httpx.HTTPError):
            await pending

    assert await db.fetchval("select status from h2s_captures") == "requested"
    assert await db.fetchval("select state from h2s_checkouts") == "capture_pending"

    servers(**fast)  # the restart's reconciler sends the owed capture again, same key
    deadline = time.monotonic() + 30
    while await db.fetchval("select state from h2s_checkouts") != "paid":
        assert time.monotonic() < deadline, "the reconciler did not finish the capture"
        await asyncio.sleep(0.2)

    session = stripe.get_session(body["pay"]["session_id"])
    intent = stripe.get_payment_intent(session["payment_intent"])
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 8000)
    keys = {r.idempotency_key for r in stripe.find_requests(CAPTURES)}
    assert keys == {f"h2s-capture-{body['order_id']}"}
    # The first call captured; every later one was Stripe's replay of that answer.
    assert [r.replayed for r in stripe.find_requests(CAPTURES)][1:] == [True] * (
        len(stripe.find_requests(CAPTURES)) - 1
    )
    assert await db.fetchval("select amount_paid_cents from h2s_orders") == 8000


async def test_a_retried_complete_after_a_crash_captures_once(servers, db, stripe):
    fast = {**HELD, "H2S_CHECKOUT_LEASE_S": "1"}
    server = servers(**fast)
    body = held_order(server.url, stripe)
    stripe.faults.add("timeout", CAPTURES, seconds=5, processed=True, times=1)
    url = f"/api/jobs/{body['job_id']}/complete"

    async with httpx.AsyncClient(base_url=server.url, headers=ADMIN, timeout=30) as http:
        pending = asyncio.create_task(http.post(url, json={"final_amount_cents": 7000}))
        deadline = time.monotonic() + 10
        while not stripe.find_requests(CAPTURES):
            assert time.monotonic() < deadline, "the capture call never reached the emulator"
            await asyncio.sleep(0.05)
        server.kill()
        with pytest.raises(httpx.HTTPError):
            await pending

    # The dispatch system retries on a fresh process once the lease has run out.
    again = servers(**fast)
    deadline = time.monotonic() + 30
    while True:
        answer = httpx.post(
            f"{again.url}{url}", json={"final_amount_cents": 7000}, headers=ADMIN, timeout=30
        )
        if answer.json().get("state") == "paid":
            break
        assert time.monotonic() < deadline, answer.text
        await asyncio.sleep(0.3)

    assert len(captures_made(stripe)) == 1
    assert await db.fetchval("select amount_paid_cents from h2s_orders") == 7000


async def test_duplicate_events_of_a_partial_refund_change_nothing(servers, db, stripe):
    server = servers(**HELD)
    body = held_order(server.url, stripe)
    httpx.post(
        f"{server.url}/api/jobs/{body['job_id']}/complete", json={}, headers=ADMIN, timeout=30
    )
    part = httpx.post(
        f"{server.url}/api/orders/{body['order_id']}/refunds",
        json={"amount_cents": 3000, "reason": "requested_by_customer"},
        headers=ADMIN,
        timeout=30,
    )
    assert part.status_code == 200, part.text

    results = []
    for event in [e for e in stripe.events if e["type"] in ("refund.created", "charge.refunded")]:
        for _ in range(2):
            content, headers = signed(event)
            answer = httpx.post(
                f"{server.url}/api/stripe/webhook", content=content, headers=headers, timeout=30
            )
            results.append(answer.json()["result"])

    assert set(results) <= {"already_succeeded", "duplicate"}
    assert await db.fetchval("select state from h2s_checkouts") == "partially_refunded"
    parts = await db.fetchval(
        "select count(*) from h2s_checkout_traces where kind = 'transition'"
        " and event = 'refund_part'"
    )
    assert parts == 1


def test_pay_on_the_hosted_page_then_complete_captures_through_signed_events(monkeypatch):
    from emulator_sdk import pay_form
    from h2s_checkout.cli.smoke import throwaway_serve

    monkeypatch.setenv("H2S_CAPTURE", "on_completion")
    with throwaway_serve() as (base_url, token):
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
            body = http.post("/api/checkout", json=checkout_body()).json()
            paid = httpx.post(
                body["pay"]["session_url"].rstrip("/") + "/pay",
                data=pay_form(body["pay"]["session_url"], email="ana@example.com"),
                follow_redirects=False,
                timeout=10,
            )
            assert paid.status_code == 303
            deadline = time.monotonic() + 20
            while http.get(f"/api/orders/{body['order_id']}").json()["state"] != "authorized":
                assert time.monotonic() < deadline, "the emulator's completed event never came"
                time.sleep(0.1)
            held = http.get(f"/api/orders/{body['order_id']}").json()
            assert held["job"]["status"] == "dispatchable"
            assert held["order"]["amount_authorized_cents"] == 14900

            done = http.post(
                f"/api/jobs/{body['job_id']}/complete", json={"final_amount_cents": 9900}
            )

            assert done.status_code == 200, done.text
            assert done.json()["state"] == "paid"
            assert done.json()["order"]["amount_paid_cents"] == 9900
            # The emulator's payment_intent.succeeded and charge.captured events arrive
            # and change nothing.
            timeline = http.get(f"/api/orders/{body['order_id']}/timeline").json()
            assert [s["event"] for s in timeline["steps"] if s["event"] == "capture"] == ["capture"]


REFUNDS = "POST /v1/refunds"


def paid_order(server_url: str, stripe) -> dict:
    body = httpx.post(f"{server_url}/api/checkout", json=checkout_body(), timeout=30).json()
    session = stripe.complete_session(body["pay"]["session_id"])
    content, headers = signed(stripe_event("checkout.session.completed", session))
    answer = httpx.post(f"{server_url}/api/stripe/webhook", content=content, headers=headers)
    assert answer.json()["result"] == "paid", answer.text
    return body


async def test_twenty_partial_refunds_over_two_processes_never_exceed_the_payment(
    servers, db, stripe
):
    first, second = servers(), servers()
    body = paid_order(first.url, stripe)
    url = f"/api/orders/{body['order_id']}/refunds"
    part = {"amount_cents": 1000, "reason": "requested_by_customer"}

    async with (
        httpx.AsyncClient(base_url=first.url, headers=ADMIN, timeout=30) as a,
        httpx.AsyncClient(base_url=second.url, headers=ADMIN, timeout=30) as b,
    ):
        answers = await asyncio.gather(
            *((a if n % 2 else b).post(url, json=part) for n in range(20))
        )

    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] * 14 + [422] * 6  # 14 900 cents paid: fourteen parts fit
    assert len(stripe.list_refunds()) == 14
    assert await db.fetchval("select sum(amount_cents) from h2s_refunds") == 14000
    assert await db.fetchval("select state from h2s_checkouts") == "partially_refunded"


async def test_a_crash_between_a_partial_refund_call_and_its_write_refunds_once(
    servers, db, stripe
):
    fast = {"H2S_CHECKOUT_LEASE_S": "1", "H2S_RECONCILE_INTERVAL_S": "1"}
    server = servers(**fast)
    body = paid_order(server.url, stripe)
    stripe.faults.add("timeout", REFUNDS, seconds=5, processed=True, times=1)

    async with httpx.AsyncClient(base_url=server.url, headers=ADMIN, timeout=30) as http:
        pending = asyncio.create_task(
            http.post(
                f"/api/orders/{body['order_id']}/refunds",
                json={"amount_cents": 4000, "reason": "requested_by_customer"},
            )
        )
        deadline = time.monotonic() + 10
        while not stripe.list_refunds():
            assert time.monotonic() < deadline, "the refund call never reached the emulator"
            await asyncio.sleep(0.05)
        server.kill()
        with pytest.raises(httpx.HTTPError):
            await pending

    assert await db.fetchval("select status from h2s_refunds") == "requested"
    assert await db.fetchval("select state from h2s_checkouts") == "paid"

    servers(**fast)  # the restart's reconciler sends the owed part again, same key
    deadline = time.monotonic() + 30
    while await db.fetchval("select state from h2s_checkouts") != "partially_refunded":
        assert time.monotonic() < deadline, "the reconciler did not finish the refund"
        await asyncio.sleep(0.2)

    assert [r["amount"] for r in stripe.list_refunds()] == [4000]
    keys = {r.idempotency_key for r in stripe.find_requests(REFUNDS)}
    assert keys == {f"h2s-refund-{body['order_id']}-1"}
