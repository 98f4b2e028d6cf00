"""SQL for what happens after the session: paid, expired, and the webhook event log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

_MARK_PAID = """
with o as (
    update h2s_orders
    set status = 'paid', paid_at = $2, updated_at = $2, payment_intent = $3,
        amount_paid_cents = $4
    where order_id = $1 and status = 'pending_payment'
    returning order_id
)
update h2s_dispatch_jobs j set status = 'dispatchable', updated_at = $2
from o where j.order_id = o.order_id and j.status = 'queued'
returning j.job_id
"""

# No technician goes to an unpaid job: the order ends expired and its job is cancelled.
_MARK_EXPIRED = """
with o as (
    update h2s_orders set status = 'expired', updated_at = $2
    where order_id = $1 and status = 'pending_payment'
    returning order_id
)
update h2s_dispatch_jobs j set status = 'cancelled', updated_at = $2
from o where j.order_id = o.order_id and j.status = 'queued'
returning j.job_id
"""

# A cancelled paid order: no technician drives out, whatever the job's status was.
_MARK_REFUND_PENDING = """
with o as (
    update h2s_orders set status = 'refund_pending', updated_at = $2
    where order_id = $1 and status in ('paid', 'refund_failed', 'partially_refunded')
    returning order_id
)
update h2s_dispatch_jobs j set status = 'cancelled', updated_at = $2
from o where j.order_id = o.order_id and j.status <> 'cancelled'
returning j.job_id
"""

_SET_ORDER_STATUS = """
update h2s_orders set status = $3, updated_at = $4
where order_id = $1 and status = $2
"""

# A delayed payment that failed: the order and its job are cancelled, as an unpaid order is.
_CANCEL_UNPAID = """
with o as (
    update h2s_orders set status = 'cancelled', updated_at = $2
    where order_id = $1 and status = 'pending_payment'
    returning order_id
)
update h2s_dispatch_jobs j set status = 'cancelled', updated_at = $2
from o where j.order_id = o.order_id and j.status = 'queued'
returning j.job_id
"""

_RECORD_EVENT = """
insert into h2s_webhook_events (event_id, type, session_id, result, payload)
values ($1, $2, $3, 'received', $4)
on conflict (event_id) do nothing
returning event_id
"""

_EVENT_RESULT = """
update h2s_webhook_events set result = $2, checkout_id = $3 where event_id = $1
"""

_FIND_CHECKOUT_FOR_UPDATE = """
select * from h2s_checkouts
where checkout_id = coalesce($1::uuid, (select checkout_id from h2s_orders where order_id = $2),
                             (select checkout_id from h2s_checkouts where session_id = $3))
for update
"""


async def mark_paid(
    conn: asyncpg.Connection,
    order_id: str,
    at: datetime,
    *,
    payment_intent: str | None,
    amount_cents: int | None,
) -> bool:
    """Order paid, with what paid it, and its job dispatchable, together; False if the
    order was not pending."""
    return await conn.fetchval(_MARK_PAID, order_id, at, payment_intent, amount_cents) is not None


async def mark_refund_pending(conn: asyncpg.Connection, order_id: str, at: datetime) -> bool:
    """A paid order being refunded; its job cancelled at once."""
    return await conn.fetchval(_MARK_REFUND_PENDING, order_id, at) is not None


async def set_order_status(
    conn: asyncpg.Connection, order_id: str, *, old: str, new: str, at: datetime
) -> None:
    await conn.execute(_SET_ORDER_STATUS, order_id, old, new, at)


async def cancel_unpaid(conn: asyncpg.Connection, order_id: str, at: datetime) -> bool:
    """An unpaid order cancelled with its job; False if the order was not pending."""
    return await conn.fetchval(_CANCEL_UNPAID, order_id, at) is not None


async def mark_expired(conn: asyncpg.Connection, order_id: str, at: datetime) -> bool:
    return await conn.fetchval(_MARK_EXPIRED, order_id, at) is not None


async def record_event(
    conn: asyncpg.Connection,
    event_id: str,
    type_: str,
    session_id: str | None,
    payload: dict[str, Any],
) -> bool:
    """True the first time an event id is seen; False for a redelivery."""
    return await conn.fetchval(_RECORD_EVENT, event_id, type_, session_id, payload) is not None


async def set_event_result(
    conn: asyncpg.Connection, event_id: str, result: str, checkout_id: uuid.UUID | None
) -> None:
    await conn.execute(_EVENT_RESULT, event_id, result, checkout_id)


_FIND_CHECKOUT_BY_INTENT_FOR_UPDATE = """
select * from h2s_checkouts
where checkout_id = coalesce($1::uuid,
                             (select checkout_id from h2s_orders where payment_intent = $2))
for update
"""


async def find_checkout_by_intent_for_update(
    conn: asyncpg.Connection, *, checkout_id: uuid.UUID | None, payment_intent: str
) -> asyncpg.Record | None:
    """The checkout a PaymentIntent belongs to: by our trace id in its metadata, else by
    the order it paid or holds."""
    return await conn.fetchrow(_FIND_CHECKOUT_BY_INTENT_FOR_UPDATE, checkout_id, payment_intent)


async def find_checkout_for_update(
    conn: asyncpg.Connection,
    *,
    checkout_id: uuid.UUID | None,
    order_id: str | None,
    session_id: str | None,
) -> asyncpg.Record | None:
    """The checkout a session belongs to: by our trace id, else the order id, else the
    session id, so an event that arrives before the session was linked still lands."""
    return await conn.fetchrow(_FIND_CHECKOUT_FOR_UPDATE, checkout_id, order_id, session_id)
