"""SQL for refunds (owed, sent, settled) and for operators' Idempotency-Keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

# The lock is taken in a statement of its own and the order read in the next: a statement
# that waited for the checkout's lock sees the checkout as committed (READ COMMITTED
# re-reads the locked row) but the order as it was when the statement began, so one
# joined statement could pair a checkout just paid with its order's old, empty
# payment_intent. The second statement takes a fresh snapshot.
_LOCK_CHECKOUT_BY_ORDER = """
select c.checkout_id from h2s_checkouts c
where c.checkout_id = (select o.checkout_id from h2s_orders o where o.order_id = $1)
for update of c
"""

_CHECKOUT_WITH_ORDER = """
select c.*, o.status as order_status, o.payment_intent, o.amount_paid_cents, o.total_cents,
       o.currency, o.amount_authorized_cents, j.status as job_status
from h2s_checkouts c join h2s_orders o on o.checkout_id = c.checkout_id
left join h2s_dispatch_jobs j on j.order_id = o.order_id
where c.checkout_id = $1
"""

# What of a payment is spoken for: refunds succeeded, and those on their way (Stripe
# holds their amount too); a failed or canceled one gave it back.
_REFUNDED_CENTS = """
select coalesce(sum(amount_cents) filter (where status = 'succeeded'), 0) as refunded,
       coalesce(sum(amount_cents) filter (
           where status in ('requested', 'pending', 'requires_action')), 0) as in_flight
from h2s_refunds where order_id = $1 and cause <> 'late_payment'
"""

_INSERT_REFUND = """
insert into h2s_refunds (
    refund_id, checkout_id, order_id, attempt, cause, reason, note, actor, amount_cents,
    currency, payment_intent, idempotency_key, locked_until)
values ($1, $2, $3,
        coalesce((select max(attempt) from h2s_refunds where order_id = $3), 0) + 1,
        $4, $5, $6, $7, $8, $9, $10, 'h2s-refund-' || $3 || '-' ||
        (coalesce((select max(attempt) from h2s_refunds where order_id = $3), 0) + 1),
        $11)
returning *
"""

_REFUNDS_OF = "select * from h2s_refunds where checkout_id = $1 order by attempt"

_GET_REFUND_FOR_UPDATE = "select * from h2s_refunds where refund_id = $1 for update"

# A provider event names its refund by the provider's id, and carries ours in its metadata
# (the event may arrive before the answer to our own create was written).
_FIND_REFUND_FOR_UPDATE = """
select * from h2s_refunds
where refund_id = coalesce(
    (select refund_id from h2s_refunds where stripe_refund_id = $1), $2::uuid)
for update
"""

_FIND_REFUND = """
select * from h2s_refunds
where refund_id = coalesce(
    (select refund_id from h2s_refunds where stripe_refund_id = $1), $2::uuid)
"""

_RECORD_PROVIDER_ANSWER = """
update h2s_refunds
set stripe_refund_id = coalesce(stripe_refund_id, $2), status = $3,
    failure_reason = coalesce($4, failure_reason), locked_until = null, updated_at = $5
where refund_id = $1
returning *
"""

_RELEASE = "update h2s_refunds set locked_until = null where refund_id = $1"

# Refunds the provider has not settled, leased as the reconciler leases checkouts: SKIP
# LOCKED and the lease in one statement, so two replicas never work on the same refund.
# 'requested' ones whose lease ran out were never confirmed sent (the process died, or the
# provider failed): the create is replayed with the same key. 'pending' ones are asked about
# once they have waited `asked_after` for their event. Late-payment refunds only when the
# shop lets the service refund those by itself.
_LEASE_OPEN = """
with due as (
    select refund_id from h2s_refunds
    where status in ('requested', 'pending', 'requires_action')
      and (locked_until is null or locked_until <= $1)
      and (status = 'requested' or updated_at <= $2)
      and (cause <> 'late_payment' or $3)
    order by updated_at
    limit $4
    for update skip locked
)
update h2s_refunds r set locked_until = $5
from due where r.refund_id = due.refund_id
returning r.*
"""

_CLAIM_REQUEST_KEY = """
with claimed as (
    insert into h2s_request_keys (scope, idempotency_key, request_fingerprint, order_id)
    values ($1, $2, $3, $4)
    on conflict (scope, idempotency_key) do nothing
    returning true as fresh, request_fingerprint
)
select fresh, request_fingerprint from claimed
union all
select false, request_fingerprint from h2s_request_keys
where scope = $1 and idempotency_key = $2 and not exists (select 1 from claimed)
"""

_REAP_REQUEST_KEYS = "delete from h2s_request_keys where created_at < $1"


@dataclass(frozen=True, slots=True)
class NewRefund:
    refund_id: uuid.UUID
    checkout_id: uuid.UUID
    order_id: str
    cause: str
    reason: str
    note: str | None
    actor: str
    amount_cents: int
    currency: str
    payment_intent: str
    locked_until: datetime | None


async def lock_checkout_by_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    """The order's checkout, row-locked for the caller's transaction, with what a refund
    needs from the order, read once the lock is held."""
    checkout_id = await conn.fetchval(_LOCK_CHECKOUT_BY_ORDER, order_id)
    if checkout_id is None:
        return None
    return await conn.fetchrow(_CHECKOUT_WITH_ORDER, checkout_id)


async def refunded_cents(conn: asyncpg.Connection, order_id: str) -> tuple[int, int]:
    """(refunded, on their way) in cents for the order's own refunds (not late payments')."""
    row = await conn.fetchrow(_REFUNDED_CENTS, order_id)
    return int(row["refunded"]), int(row["in_flight"])


async def insert_refund(conn: asyncpg.Connection, new: NewRefund) -> asyncpg.Record:
    """A refund owed; its attempt number and idempotency key follow the order's earlier
    attempts (h2s-refund-<order id>-<attempt>)."""
    row: asyncpg.Record = await conn.fetchrow(
        _INSERT_REFUND,
        new.refund_id,
        new.checkout_id,
        new.order_id,
        new.cause,
        new.reason,
        new.note,
        new.actor,
        new.amount_cents,
        new.currency,
        new.payment_intent,
        new.locked_until,
    )
    return row


async def refunds_of(conn: asyncpg.Connection, checkout_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(_REFUNDS_OF, checkout_id)


async def get_refund_for_update(
    conn: asyncpg.Connection, refund_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(_GET_REFUND_FOR_UPDATE, refund_id)


async def find_refund_for_update(
    conn: asyncpg.Connection, *, stripe_refund_id: str | None, refund_id: uuid.UUID | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(_FIND_REFUND_FOR_UPDATE, stripe_refund_id, refund_id)


async def find_refund(
    conn: asyncpg.Connection, *, stripe_refund_id: str | None, refund_id: uuid.UUID | None
) -> asyncpg.Record | None:
    """The refund an event names, unlocked: its checkout is locked before it (the order
    every path takes: checkout, then refund)."""
    return await conn.fetchrow(_FIND_REFUND, stripe_refund_id, refund_id)


async def record_provider_answer(
    conn: asyncpg.Connection,
    refund_id: uuid.UUID,
    *,
    stripe_refund_id: str,
    status: str,
    failure_reason: str | None,
    at: datetime,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        _RECORD_PROVIDER_ANSWER, refund_id, stripe_refund_id, status, failure_reason, at
    )
    return row


async def release(conn: asyncpg.Connection, refund_id: uuid.UUID) -> None:
    await conn.execute(_RELEASE, refund_id)


async def lease_open(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    asked_after: datetime,
    include_late_payments: bool,
    until: datetime,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(_LEASE_OPEN, now, asked_after, include_late_payments, limit, until)


async def claim_request_key(
    conn: asyncpg.Connection, scope: str, key: str, fingerprint: str, order_id: str
) -> str:
    """``new`` the first time a key is seen, ``same`` for the same request again,
    ``other`` for the key reused with another request."""
    row = await conn.fetchrow(_CLAIM_REQUEST_KEY, scope, key, fingerprint, order_id)
    if row is None:
        # Claimed by a request for another order that committed while this statement ran.
        return "other"
    if row["fresh"]:
        return "new"
    return "same" if row["request_fingerprint"] == fingerprint else "other"


async def reap_request_keys(conn: asyncpg.Connection, older_than: datetime) -> int:
    result: str = await conn.execute(_REAP_REQUEST_KEYS, older_than)
    return int(result.split()[-1])
