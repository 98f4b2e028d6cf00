"""On the embedded stack, paying on the emulator's hosted page makes the job dispatchable
through a real signed webhook; an expired session cancels it."""

from __future__ import annotations

import time

import httpx
import pytest

from emulator_sdk import pay_form
from h2s_checkout.cli.smoke import throwaway_serve
from support import checkout_body

pytestmark = pytest.mark.slow


def wait_for_state(http: httpx.Client, trace_id: str, state: str, timeout_s: float = 15) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        view = http.get(f"/api/checkouts/{trace_id}").json()
        if view["state"] == state or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def test_paying_on_the_hosted_page_makes_the_job_dispatchable():
    with throwaway_serve() as (base_url, token):
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
            body = http.post("/api/checkout", json=checkout_body()).json()
            page = httpx.get(body["pay"]["session_url"], timeout=10)
            assert page.status_code == 200
            assert "149.00" in page.text
            paid = httpx.post(
                body["pay"]["session_url"].rstrip("/") + "/pay",
                data=pay_form(body["pay"]["session_url"], email="ana@example.com"),
                follow_redirects=False,
                timeout=10,
            )
            assert paid.status_code == 303
            assert paid.headers["location"].startswith("http://localhost")

            view = wait_for_state(http, body["checkout_trace_id"], "paid")
            assert view["state"] == "paid"
            assert view["order"]["status"] == "paid"
            assert view["job"]["status"] == "dispatchable"
            timeline = http.get(f"/api/checkouts/{body['checkout_trace_id']}/timeline").json()
            pay = [s for s in timeline["steps"] if s["event"] == "pay"]
            assert pay
            assert pay[0]["detail"]["source"].startswith("webhook:evt_")
