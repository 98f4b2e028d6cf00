"""Every view of a checkout answers in every state of the machine: the debug page and its
search, the timelines, the checkout view, the portal and the terminal's trace.

The states are read from CheckoutMachine itself, so a state added to the machine is walked
here before any page can meet it in production. (The customer's return pages have their
own walk, with their words, in test_return_pages.py.)"""

from __future__ import annotations

import uuid

import pytest

from h2s_checkout.cli import trace
from h2s_checkout.domain.machine import CheckoutMachine
from support import checkout_body

MACHINE_STATES = [state.id for state in CheckoutMachine.states]


@pytest.mark.parametrize("state", MACHINE_STATES)
async def test_every_view_answers_a_checkout_in_each_state(client, db, stripe, admin, state):
    body = (await client.post("/api/checkout", json=checkout_body())).json()
    trace_id, order = body["checkout_trace_id"], body["order_id"]
    await db.execute(
        "update h2s_checkouts set state = $2 where checkout_id = $1", uuid.UUID(trace_id), state
    )

    page = await client.get(f"/debug/checkouts/{trace_id}", headers=admin)
    assert page.status_code == 200, page.text
    assert f"data-state='{state}'>{state}</span>" in page.text
    found = await client.get("/debug", params={"q": "ana@example.com"}, headers=admin)
    assert found.status_code == 200, found.text
    assert f"state-{state}'>{state}</span>" in found.text

    for url in (f"/api/checkouts/{trace_id}/timeline", f"/api/orders/{order}/timeline"):
        timeline = await client.get(url, headers=admin)
        assert timeline.status_code == 200, timeline.text
        assert timeline.json()["state"] == state
    view = await client.get(f"/api/checkouts/{trace_id}", headers=admin)
    assert view.status_code == 200, view.text
    assert view.json()["state"] == state
    jobs = await client.get("/api/portal/jobs", params={"order_id": order}, headers=admin)
    assert jobs.status_code == 200, jobs.text
    assert [job["order_id"] for job in jobs.json()["jobs"]] == [order]

    assert f"state: {state}" in trace.render(timeline.json())
    order_view = await client.get(f"/api/orders/{order}", headers=admin)
    assert order_view.status_code == 200, order_view.text
    assert order_view.json()["state"] == state
