"""A row lock waited for is followed by a fresh read: what a cancel, a refund or a complete
reads of the order once it holds the checkout's lock is the order as committed then, not
as it was when its statement began (READ COMMITTED re-reads only the locked row)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from h2s_checkout.store import captures
from h2s_checkout.store import refunds as refunds_store
from support import checkout_body


async def _waiting_for_a_lock(db: asyncpg.Connection, pid: int) -> None:
    while not await db.fetchval(
        "select wait_event_type = 'Lock' from pg_stat_activity where pid = $1", pid
    ):
        await asyncio.sleep(0.01)


async def _paid_meanwhile(database_url: str, db, client, read) -> asyncpg.Record:
    """``read`` run while another transaction holds the checkout's lock and pays its
    order; what it returned once that transaction committed."""
    body = (await client.post("/api/checkout", json=checkout_body())).json()
    checkout_id = uuid.UUID(body["checkout_trace_id"])
    payer = await asyncpg.connect(database_url)
    reader = await asyncpg.connect(database_url)
    try:
        tx = payer.transaction()
        await tx.start()
        await payer.execute(
            "select 1 from h2s_checkouts where checkout_id = $1 for update", checkout_id
        )
        await payer.execute(
            "update h2s_orders set status = 'paid', payment_intent = 'pi_paid_meanwhile',"
            " amount_paid_cents = 14900 where order_id = $1",
            body["order_id"],
        )
        await payer.execute(
            "update h2s_checkouts set state = 'paid' where checkout_id = $1", checkout_id
        )
        reading = asyncio.create_task(read(reader, body))
        await _waiting_for_a_lock(db, reader.get_server_pid())
        await tx.commit()
        return await reading
    finally:
        await payer.close()
        await reader.close()


async def test_the_order_is_read_after_the_checkouts_lock_by_order(
    database_url, db, client, stripe
):
    async def read(conn: asyncpg.Connection, body: dict) -> asyncpg.Record:
        async with conn.transaction():
            return await refunds_store.lock_checkout_by_order(conn, body["order_id"])

    row = await _paid_meanwhile(database_url, db, client, read)

    assert row["state"] == "paid"
    assert row["payment_intent"] == "pi_paid_meanwhile"
    assert (row["order_status"], row["amount_paid_cents"]) == ("paid", 14900)


async def test_the_order_is_read_after_the_checkouts_lock_by_job(database_url, db, client, stripe):
    async def read(conn: asyncpg.Connection, body: dict) -> asyncpg.Record:
        async with conn.transaction():
            checkout = await captures.lock_checkout_by_job(conn, uuid.UUID(body["job_id"]))
            assert checkout is not None
            return await captures.order_and_job(conn, checkout["order_id"])

    row = await _paid_meanwhile(database_url, db, client, read)

    assert (row["order_status"], row["payment_intent"]) == ("paid", "pi_paid_meanwhile")
