"""Cancel and refund across real server processes: races over two replicas, a crash
between the refund call and its write, and paying then cancelling on the hosted page."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from emulator_sdk import pay_form
from h2s_checkout.cli.smoke import throwaway_serve
from support import ADMIN_TOKEN, checkout_body, signed, stripe_event

pytestmark = pytest.mark.slow
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REFUNDS = "POST /v1/refunds"


def paid_order(server_url: str, stripe) -> dict:
    body = httpx.post(f"{server_url}/api/checkout", json=checkout_body(), timeout=30).json()
    session = stripe.complete_session(body["pay"]["session_id"])
    content, headers = signed(stripe_event("checkout.session.completed", session))
    answer = httpx.post(f"{server_url}/api/stripe/webhook", content=content, headers=headers)
    assert answer.json()["result"] == "paid"
    return body


async def test_twenty_cancels_over_two_processes_make_one_refund(servers, db, stripe):
    first, second = servers(), servers()
    body = paid_order(first.url, stripe)
    url = f"/api/orders/{body['order_id']}/cancel"

    async with (
        httpx.AsyncClient(base_url=first.url, headers=ADMIN, timeout=30) as a,
        httpx.AsyncClient(base_url=second.url, headers=ADMIN, timeout=30) as b,
    ):
        answers = await asyncio.gather(
            *((a if n % 2 else b).post(url, json={"reason": "duplicate"}) for n in range(20))
        )

    # Each status says what its body says: 202 only while the refund is on its way.
    for answer in answers:
        pending = answer.json()["state"] == "refund_pending"
        assert answer.status_code == (202 if pending else 200), answer.text
    refund_ids = {answer.json()["refund"]["id"] for answer in answers}
    assert len(refund_ids) == 1
    assert len(stripe.list_refunds()) == 1
    assert len(stripe.find_requests(REFUNDS)) == 1
    refund_transitions = await db.fetchval(
        "select count(*) from h2s_checkout_traces where kind = 'transition' and event = 'refund'"
    )
    assert refund_transitions == 1
    assert await db.fetchval("select state from h2s_checkouts") == "refunded"


async def test_a_crash_between_the_refund_call_and_its_write_still_makes_one_refund(
    servers, db, stripe
):
    fast = {"H2S_CHECKOUT_LEASE_S": "1", "H2S_RECONCILE_INTERVAL_S": "1"}
    server = servers(**fast)
    body = paid_order(server.url, stripe)
    # Stripe makes the refund, then holds its answer: the process dies before writing it.
    stripe.faults.add("timeout", REFUNDS, seconds=5, processed=True, times=1)

    async with httpx.AsyncClient(base_url=server.url, headers=ADMIN, timeout=30) as http:
        pending = asyncio.create_task(
            http.post(f"/api/orders/{body['order_id']}/cancel", json={"reason": "duplicate"})
        )
        deadline = time.monotonic() + 10
        while not stripe.list_refunds():
            assert time.monotonic() < deadline, "the refund call never reached the emulator"
            await asyncio.sleep(0.05)
        server.kill()
        with pytest.raises(httpx.HTTPError):
            await pending

    assert await db.fetchval("select status from h2s_refunds") == "requested"
    assert await db.fetchval("select state from h2s_checkouts") == "refund_pending"

    servers(**fast)  # the restart's reconciler sends the owed refund again, same key
    deadline = time.monotonic() + 30
    while await db.fetchval("select state from h2s_checkouts") != "refunded":
        assert time.monotonic() < deadline, "the reconciler did not finish the refund"
        await asyncio.sleep(0.2)

    assert len(stripe.list_refunds()) == 1
    keys = {r.idempotency_key for r in stripe.find_requests(REFUNDS)}
    assert keys == {f"h2s-refund-{body['order_id']}-1"}
    assert (
        await db.fetchval("select stripe_refund_id from h2s_refunds")
        == (stripe.list_refunds()[0]["id"])
    )


def wait_for(http: httpx.Client, trace_id: str, state: str, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        view = http.get(f"/api/checkouts/{trace_id}").json()
        if view["state"] == state or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def test_pay_on_the_hosted_page_then_cancel_refunds_through_signed_events():
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
            assert wait_for(http, body["checkout_trace_id"], "paid")["state"] == "paid"

            answer = http.post(
                f"/api/orders/{body['order_id']}/cancel",
                json={"reason": "requested_by_customer", "note": "booked twice"},
            )
            pending = answer.json()["state"] == "refund_pending"
            assert answer.status_code == (202 if pending else 200), answer.text
            view = wait_for(http, body["checkout_trace_id"], "refunded")
            assert view["state"] == "refunded"
            assert view["order"]["status"] == "refunded"
            assert view["job"]["status"] == "cancelled"
            assert view["refunds"][0]["status"] == "succeeded"
            # The emulator's signed refund events reach the service and change nothing.
            deadline = time.monotonic() + 20
            while 'type="charge.refunded"' not in http.get("/metrics").text:
                assert time.monotonic() < deadline, "the refund events never arrived"
                time.sleep(0.2)
            metrics = http.get("/metrics").text
            assert 'result="already_succeeded",type="refund.created"' in metrics
            timeline = http.get(f"/api/orders/{body['order_id']}/timeline").json()
            assert len([s for s in timeline["steps"] if s["event"] == "complete_refund"]) == 1

            unpaid = http.post("/api/checkout", json=checkout_body(email="bo@example.com")).json()
            cancelled = http.post(
                f"/api/orders/{unpaid['order_id']}/cancel", json={"reason": "other"}
            )
            assert cancelled.status_code == 200
            assert cancelled.json()["state"] == "cancelled"
            page = httpx.get(unpaid["pay"]["session_url"], timeout=10)
            assert "expired" in page.text.lower()
