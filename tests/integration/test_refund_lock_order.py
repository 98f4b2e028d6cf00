"""Settling refunds locks the checkout before a refund, on every path: Stripe's
charge.refunded (which lists every refund of the charge, newest first) and a refund's own
refund.updated, arriving together for an order refunded in parts, once deadlocked (each
held one refund and waited for the checkout the other held)."""

from __future__ import annotations

import asyncio

import asyncpg

from stripe_checkout_emulator.ledger import RefundRule
from support import checkout_body, signed, stripe_event


async def _waiters(db: asyncpg.Connection) -> int:
    return await db.fetchval(
        "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
        " and datname = current_database()"
    )


async def _until_waiting(db: asyncpg.Connection, n: int) -> None:
    while await _waiters(db) < n:
        await asyncio.sleep(0.01)


async def test_a_charge_event_and_a_refund_event_together_both_apply(
    client, db, stripe, admin, database_url
):
    body = (await client.post("/api/checkout", json=checkout_body())).json()
    session = stripe.complete_session(body["pay"]["session_id"])
    signed_body, headers = signed(stripe_event("checkout.session.completed", session))
    await client.post("/api/stripe/webhook", content=signed_body, headers=headers)
    stripe.add_refund_rule(RefundRule(outcome="succeeded", delay_s=None))
    for amount in (2000, 3000):
        part = await client.post(
            f"/api/orders/{body['order_id']}/refunds",
            json={"amount_cents": amount, "reason": "requested_by_customer"},
            headers=admin,
        )
        assert part.status_code == 202, part.text
    older, newer = sorted(stripe.list_refunds(), key=lambda r: r["amount"])
    for made in (older, newer):
        stripe.settle_refund(made["id"], True)
    charge = stripe.get_charge(older["charge"])
    both = stripe_event("charge.refunded", charge)  # lists newer, then older
    [one] = [
        e
        for e in stripe.events
        if e["type"] == "refund.updated" and e["data"]["object"]["id"] == older["id"]
    ]

    async def post(event: dict) -> int:
        content, hdrs = signed(event)
        answer = await client.post("/api/stripe/webhook", content=content, headers=hdrs)
        return answer.status_code

    holder = await asyncpg.connect(database_url)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(
            "select 1 from h2s_checkouts where order_id = $1 for update", body["order_id"]
        )
        first = asyncio.create_task(post(both))
        await _until_waiting(db, 1)
        second = asyncio.create_task(post(one))
        await _until_waiting(db, 2)
        await tx.commit()
        statuses = await asyncio.gather(first, second)
    finally:
        await holder.close()

    assert statuses == [200, 200]
    assert await db.fetchval("select state from h2s_checkouts") == "partially_refunded"
    assert await db.fetchval("select count(*) from h2s_refunds where status = 'succeeded'") == 2
