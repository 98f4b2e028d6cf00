"""What we send to Stripe and how we read its answers follow the SDK's types (stripe 16):
no parameter the current API lacks, and a refund's status read as optional."""

from __future__ import annotations

from stripe_checkout_emulator.ledger import RefundRule
from stripe_checkout_emulator.validate import CREATE_PARAMS
from support import checkout_body, signed, stripe_event


async def deliver(client, event: dict) -> dict:
    body, headers = signed(event)
    answer = await client.post("/api/stripe/webhook", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_session_is_asked_for_with_the_current_apis_parameters_only(client, stripe):
    answer = await client.post("/api/checkout", json=checkout_body())
    assert answer.status_code == 201, answer.text

    [create] = stripe.find_requests("POST /v1/checkout/sessions")
    assert set(create.params) <= CREATE_PARAMS
    assert "payment_method_types" not in create.params
    assert "ui_mode" not in create.params  # hosted_page, the default


async def test_a_refund_answer_without_a_status_is_pending_until_the_provider_says(
    client, db, stripe, admin
):
    made = (await client.post("/api/checkout", json=checkout_body())).json()
    session = stripe.complete_session(made["pay"]["session_id"])
    await deliver(client, stripe_event("checkout.session.completed", session))
    stripe.add_refund_rule(RefundRule(outcome="succeeded", delay_s=None, status_withheld=True))

    cancelled = await client.post(
        f"/api/orders/{made['order_id']}/cancel",
        json={"reason": "requested_by_customer"},
        headers=admin,
    )

    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["state"] == "refund_pending"
    row = await db.fetchrow("select status, stripe_refund_id from h2s_refunds")
    [at_stripe] = stripe.list_refunds()
    assert (row["status"], row["stripe_refund_id"]) == ("pending", at_stripe["id"])
    timeline = await client.get(f"/api/orders/{made['order_id']}/timeline", headers=admin)
    assert "refund.status_unknown" in [s["event"] for s in timeline.json()["steps"]]

    stripe.settle_refund(at_stripe["id"], succeeded=True)
    updated = [e for e in stripe.events if e["type"] == "refund.updated"][-1]
    assert (await deliver(client, updated))["result"] == "succeeded"
    assert await db.fetchval("select status from h2s_refunds") == "succeeded"
    assert await db.fetchval("select state from h2s_checkouts") == "refunded"
