"""SQL for pay on completion: holds (authorized orders), the one capture of each, the job
completed, holds released or lapsed."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

# The checkout is locked first and the order and job read after, in a statement of their
# own: a statement that waited for the lock reads the other tables as they were when it
# began (READ COMMITTED re-reads only the locked row), so one statement would see the
# checkout's new state beside its order's old columns.
_LOCK_CHECKOUT_BY_JOB = """
select c.* from h2s_checkouts c
where c.checkout_id = (select o.checkout_id from h2s_dispatch_jobs j
                       join h2s_orders o on o.order_id = j.order_id
                       where j.job_id = $1)
for update of c
"""

_ORDER_AND_JOB = """
select o.status as order_status, o.payment_intent, o.amount_paid_cents, o.total_cents,
       o.currency, o.amount_authorized_cents, o.authorization_expires_at,
       j.job_id, j.status as job_status, j.completed_at
from h2s_orders o join h2s_dispatch_jobs j on j.order_id = o.order_id
where o.order_id = $1
"""

# The card holds the amount: the job can be dispatched, nothing is charged yet.
_MARK_AUTHORIZED = """
with o as (
    update h2s_orders
    set status = 'authorized', authorized_at = $2, updated_at = $2, payment_intent = $3,
        amount_authorized_cents = $4, authorization_expires_at = $5
    where order_id = $1 and status = 'pending_payment'
    returning order_id
)
update h2s_dispatch_jobs j set status = 'dispatchable', updated_at = $2
from o where j.order_id = o.order_id and j.status = 'queued'
returning j.job_id
"""

_MARK_JOB_COMPLETED = """
update h2s_dispatch_jobs set status = 'completed', completed_at = $2, updated_at = $2
where job_id = $1 and status = 'dispatchable'
returning job_id
"""

# One row per order (unique order_id): a second complete finds the first one's row.
_INSERT_CAPTURE = """
insert into h2s_captures (
    capture_id, checkout_id, order_id, job_id, amount_cents, currency, payment_intent,
    idempotency_key, note, actor, locked_until)
values ($1, $2, $3, $4, $5, $6, $7, 'h2s-capture-' || $3, $8, $9, $10)
returning *
"""

_CAPTURE_OF_ORDER = "select * from h2s_captures where order_id = $1"

_LEASE_CAPTURE = """
update h2s_captures set locked_until = $2, updated_at = updated_at
where capture_id = $1 and status = 'requested' and (locked_until is null or locked_until <= $3)
returning *
"""

_RECORD_CAPTURE = """
update h2s_captures
set status = $2, amount_captured_cents = $3, failure_code = $4, locked_until = null,
    updated_at = $5
where capture_id = $1 and status = 'requested'
returning *
"""

_RELEASE_CAPTURE = "update h2s_captures set locked_until = null where capture_id = $1"

# Captures owed and not confirmed sent, leased as refunds are: the process that owed one
# died, or the provider failed; the capture is replayed with the same key.
_LEASE_OPEN_CAPTURES = """
with due as (
    select capture_id from h2s_captures
    where status = 'requested' and (locked_until is null or locked_until <= $1)
    order by updated_at
    limit $2
    for update skip locked
)
update h2s_captures c set locked_until = $3
from due where c.capture_id = due.capture_id
returning c.*
"""

_MARK_CAPTURED = """
update h2s_orders
set status = 'paid', paid_at = $2, updated_at = $2, amount_paid_cents = $3
where order_id = $1 and status = 'authorized'
returning order_id
"""

# A released hold: the order and its job cancelled together; nothing was charged.
_CANCEL_AUTHORIZED = """
with o as (
    update h2s_orders set status = 'cancelled', updated_at = $2
    where order_id = $1 and status in ('authorized', 'authorization_expired')
    returning order_id
)
update h2s_dispatch_jobs j set status = 'cancelled', updated_at = $2
from o where j.order_id = o.order_id and j.status <> 'cancelled'
returning j.job_id
"""

# The hold lapsed: nothing can be charged; the job is flagged for staff to act on.
_MARK_AUTHORIZATION_EXPIRED = """
with o as (
    update h2s_orders set status = 'authorization_expired', updated_at = $2
    where order_id = $1 and status = 'authorized'
    returning order_id
)
update h2s_dispatch_jobs j
set payment_flag = 'authorization_expired', updated_at = $2
from o where j.order_id = o.order_id
returning j.job_id
"""

# Holds past their capture date with no word from Stripe, leased as the reconciler leases
# open sessions (SKIP LOCKED and the lease in one statement): it asks Stripe about them.
_LEASE_PAST_HOLDS = """
with due as (
    select c.checkout_id from h2s_checkouts c join h2s_orders o on o.order_id = c.order_id
    where c.state = 'authorized' and o.status = 'authorized'
      and o.authorization_expires_at <= $1
      and (c.locked_until is null or c.locked_until <= $1)
    order by o.authorization_expires_at
    limit $2
    for update of c skip locked
)
update h2s_checkouts c set locked_until = $3
from due, h2s_orders o
where c.checkout_id = due.checkout_id and o.order_id = c.order_id
returning c.checkout_id, o.payment_intent
"""

_HOLDS_LAPSING = """
select o.order_id, o.checkout_id, j.job_id, o.amount_authorized_cents, o.currency,
       o.authorization_expires_at
from h2s_orders o join h2s_dispatch_jobs j on j.order_id = o.order_id
where o.status = 'authorized' and o.authorization_expires_at < $1
order by o.authorization_expires_at
limit $2
"""


async def lock_checkout_by_job(
    conn: asyncpg.Connection, job_id: uuid.UUID
) -> asyncpg.Record | None:
    """The job's checkout, row-locked for the caller's transaction."""
    return await conn.fetchrow(_LOCK_CHECKOUT_BY_JOB, job_id)


async def order_and_job(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record:
    """The order's payment columns and its job, read after the checkout's lock was taken."""
    row: asyncpg.Record = await conn.fetchrow(_ORDER_AND_JOB, order_id)
    return row


async def mark_authorized(
    conn: asyncpg.Connection,
    order_id: str,
    at: datetime,
    *,
    payment_intent: str,
    amount_cents: int,
    expires_at: datetime | None,
) -> bool:
    """Order authorized with what holds it, and its job dispatchable; False if the order
    was not pending."""
    found = await conn.fetchval(
        _MARK_AUTHORIZED, order_id, at, payment_intent, amount_cents, expires_at
    )
    return found is not None


async def mark_job_completed(conn: asyncpg.Connection, job_id: uuid.UUID, at: datetime) -> bool:
    return await conn.fetchval(_MARK_JOB_COMPLETED, job_id, at) is not None


async def insert_capture(
    conn: asyncpg.Connection,
    *,
    checkout_id: uuid.UUID,
    order_id: str,
    job_id: uuid.UUID,
    amount_cents: int,
    currency: str,
    payment_intent: str,
    note: str | None,
    actor: str,
    locked_until: datetime | None,
) -> asyncpg.Record:
    """The order's one capture; its idempotency key is h2s-capture-<order id>."""
    row: asyncpg.Record = await conn.fetchrow(
        _INSERT_CAPTURE,
        uuid.uuid4(),
        checkout_id,
        order_id,
        job_id,
        amount_cents,
        currency,
        payment_intent,
        note,
        actor,
        locked_until,
    )
    return row


async def capture_of_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_CAPTURE_OF_ORDER, order_id)


async def lease_capture(
    conn: asyncpg.Connection, capture_id: uuid.UUID, *, now: datetime, until: datetime
) -> asyncpg.Record | None:
    """The capture leased to the caller, if it is still owed and nobody holds it."""
    return await conn.fetchrow(_LEASE_CAPTURE, capture_id, until, now)


async def record_capture(
    conn: asyncpg.Connection,
    capture_id: uuid.UUID,
    *,
    status: str,
    amount_captured_cents: int | None,
    failure_code: str | None,
    at: datetime,
) -> asyncpg.Record | None:
    """The capture's end; None if it had already ended."""
    return await conn.fetchrow(
        _RECORD_CAPTURE, capture_id, status, amount_captured_cents, failure_code, at
    )


async def release_capture(conn: asyncpg.Connection, capture_id: uuid.UUID) -> None:
    await conn.execute(_RELEASE_CAPTURE, capture_id)


async def lease_open_captures(
    conn: asyncpg.Connection, *, now: datetime, until: datetime, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(_LEASE_OPEN_CAPTURES, now, limit, until)


async def mark_captured(
    conn: asyncpg.Connection, order_id: str, at: datetime, *, amount_cents: int
) -> bool:
    return await conn.fetchval(_MARK_CAPTURED, order_id, at, amount_cents) is not None


async def cancel_authorized(conn: asyncpg.Connection, order_id: str, at: datetime) -> bool:
    return await conn.fetchval(_CANCEL_AUTHORIZED, order_id, at) is not None


async def mark_authorization_expired(conn: asyncpg.Connection, order_id: str, at: datetime) -> bool:
    return await conn.fetchval(_MARK_AUTHORIZATION_EXPIRED, order_id, at) is not None


async def holds_lapsing(
    conn: asyncpg.Connection, before: datetime, limit: int = 100
) -> list[asyncpg.Record]:
    """Authorized orders whose hold lapses before ``before``, soonest first."""
    return await conn.fetch(_HOLDS_LAPSING, before, limit)


async def lease_past_holds(
    conn: asyncpg.Connection, *, now: datetime, until: datetime, limit: int
) -> list[asyncpg.Record]:
    """Held orders past their capture date, leased to the caller to ask Stripe about."""
    return await conn.fetch(_LEASE_PAST_HOLDS, now, limit, until)
