"""SQL for a checkout and the rows it owns: recipient, order, dispatch job, failures."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from h2s_checkout.domain.errors import IllegalTransition
from h2s_checkout.store.traces import TraceWriter, utcnow

JOB_DUE_AFTER = timedelta(hours=24)

# Requests for one key queue on this lock for the length of the claim transaction only;
# no lock is held across the Stripe call.
_LOCK_CLAIM = "select pg_advisory_xact_lock(hashtextextended($1, 0))"

_FIND_BY_CLIENT_KEY = """
select * from h2s_checkouts
where key_source = 'client' and idempotency_key = $1 and state <> 'cleaned'
"""

# The window runs from the first request of a checkout, not from a clock bucket. A checkout
# that ended without payment does not hold the customer's next attempt.
_FIND_BY_DERIVED_KEY = """
select * from h2s_checkouts
where derived_key = $1 and state not in ('cleaned', 'expired') and created_at > $2
order by created_at desc
limit 1
"""

# Only a checkout still at its recovery point can be taken over: one whose phase 3 has
# just committed (clearing the lease) is finished, not abandoned.
_TAKE_OVER = """
update h2s_checkouts
set locked_until = $2, attempts = attempts + 1
where checkout_id = $1 and state = 'job_queued'
  and (locked_until is null or locked_until <= $3)
returning attempts
"""

# A checkout still running keeps its key whatever its age: the reconciler finishes it first.
_REAP_CLIENT_KEYS = """
update h2s_checkouts set idempotency_key = null
where key_source = 'client' and idempotency_key is not null and created_at < $1
  and state not in ('pending_payment', 'job_queued', 'failed')
"""

_CANCEL_ORDER_AND_JOB = """
with o as (
    update h2s_orders set status = 'cancelled', updated_at = now()
    where checkout_id = $1 and status = 'pending_payment'
    returning order_id
)
update h2s_dispatch_jobs j set status = 'cancelled', updated_at = now()
from o where j.order_id = o.order_id and j.status = 'queued'
returning j.job_id
"""

_STORE_RESPONSE = """
update h2s_checkouts
set response_status = $2, response_body = $3, locked_until = null
where checkout_id = $1
"""

_SET_SETTLEMENT = """
update h2s_checkouts
set session_id = coalesce($2, session_id), needs_settlement = $3
where checkout_id = $1
"""

_INSERT_FAILURE = """
insert into h2s_checkout_failures (
    checkout_id, phase, error_code, error_class, message, provider_request_id,
    provider_code, http_status)
values ($1, $2, $3, $4, $5, $6, $7, $8)
"""

_GET_CHECKOUT = "select * from h2s_checkouts where checkout_id = $1"
_GET_CHECKOUT_FOR_UPDATE = "select * from h2s_checkouts where checkout_id = $1 for update"
_GET_CHECKOUT_BY_ORDER = "select * from h2s_checkouts where order_id = $1"
_GET_ORDER = "select * from h2s_orders where order_id = $1"
_GET_JOB_BY_ORDER = "select * from h2s_dispatch_jobs where order_id = $1"
_GET_FAILURES = "select * from h2s_checkout_failures where checkout_id = $1 order by at"


async def lock_claim(conn: asyncpg.Connection, lock_key: str) -> None:
    await conn.execute(_LOCK_CLAIM, lock_key)


async def find_by_client_key(conn: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_FIND_BY_CLIENT_KEY, key)


async def find_by_derived_key(
    conn: asyncpg.Connection, derived_key: str, created_after: datetime
) -> asyncpg.Record | None:
    return await conn.fetchrow(_FIND_BY_DERIVED_KEY, derived_key, created_after)


async def take_over(
    conn: asyncpg.Connection, checkout_id: uuid.UUID, *, until: datetime, now: datetime
) -> int | None:
    """Claim a checkout whose lease has run out; the attempt number, or None if still held."""
    attempts: int | None = await conn.fetchval(_TAKE_OVER, checkout_id, until, now)
    return attempts


async def reap_client_keys(conn: asyncpg.Connection, older_than: datetime) -> int:
    """Forget client keys past retention; the checkouts themselves stay."""
    result: str = await conn.execute(_REAP_CLIENT_KEYS, older_than)
    return int(result.split()[-1])


async def cancel_order_and_job(conn: asyncpg.Connection, checkout_id: uuid.UUID) -> bool:
    """Cancel the order and its job together; False when there was nothing to cancel."""
    job_id = await conn.fetchval(_CANCEL_ORDER_AND_JOB, checkout_id)
    return job_id is not None


async def store_response(
    conn: asyncpg.Connection, checkout_id: uuid.UUID, status: int, body: dict[str, Any]
) -> None:
    await conn.execute(_STORE_RESPONSE, checkout_id, status, body)


async def set_settlement(
    conn: asyncpg.Connection,
    checkout_id: uuid.UUID,
    *,
    session_id: str | None,
    needs_settlement: bool,
) -> None:
    """Remember a cleaned checkout's session, and whether the provider still owes an answer."""
    await conn.execute(_SET_SETTLEMENT, checkout_id, session_id, needs_settlement)


async def insert_failure(
    conn: asyncpg.Connection,
    checkout_id: uuid.UUID,
    *,
    phase: str,
    error_code: str,
    error_class: str,
    message: str,
    provider_request_id: str | None = None,
    provider_code: str | None = None,
    http_status: int | None = None,
) -> None:
    await conn.execute(
        _INSERT_FAILURE,
        checkout_id,
        phase,
        error_code,
        error_class,
        message[:2000],
        provider_request_id,
        provider_code,
        http_status,
    )


async def get_checkout(
    conn: asyncpg.Connection, checkout_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        _GET_CHECKOUT_FOR_UPDATE if for_update else _GET_CHECKOUT, checkout_id
    )


async def get_checkout_by_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_GET_CHECKOUT_BY_ORDER, order_id)


async def get_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_GET_ORDER, order_id)


async def get_job_by_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_GET_JOB_BY_ORDER, order_id)


async def get_failures(conn: asyncpg.Connection, checkout_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(_GET_FAILURES, checkout_id)


_SEARCH_BY_EMAIL = """
select c.checkout_id, c.state, c.order_id, c.created_at, o.total_cents, o.currency
from h2s_recipients r
join h2s_orders o on o.recipient_id = r.recipient_id
join h2s_checkouts c on c.checkout_id = o.checkout_id
where r.email_normalized = $1
order by c.created_at desc
limit $2
"""


async def search_by_email(
    conn: asyncpg.Connection, email_normalized: str, limit: int = 20
) -> list[asyncpg.Record]:
    return await conn.fetch(_SEARCH_BY_EMAIL, email_normalized, limit)


# Phase 3 in one statement: the state change guarded by the state it leaves, the session
# and the job id onto the order (seed known issue 1), the stored answer, the trace rows.
_LINK_AND_MOVE = """
with moved as (
    update h2s_checkouts
    set state = $4, updated_at = $5, session_id = $6, response_status = 201,
        response_body = $7, locked_until = null
    where checkout_id = $1 and state = $3
    returning checkout_id, order_id
), linked as (
    update h2s_orders o
    set session_id = $6,
        metadata_json = o.metadata_json || jsonb_build_object(
            'dispatch_job_id', $8::text, 'checkout_trace_id', m.checkout_id::text),
        updated_at = $5
    from moved m
    where o.order_id = m.order_id
    returning o.order_id
), steps as (
    insert into h2s_checkout_traces (checkout_id, kind, event, at, duration_ms, detail)
    select m.checkout_id, 'step', s.event, s.at, s.duration_ms, coalesce(s.detail, '{}')
    from moved m,
         jsonb_to_recordset($9::jsonb) as s(event text, at timestamptz, duration_ms float8,
                                             detail jsonb)
    returning seq
)
insert into h2s_checkout_traces (checkout_id, kind, event, from_state, to_state, at, detail)
select m.checkout_id, 'transition', $2, $3, $4, $5, $10
from moved m join linked l on l.order_id = m.order_id
returning seq
"""


@dataclass
class SessionLinkWriter(TraceWriter):
    """Phase 3's listener: its transition also links the session and stores the answer,
    all in one statement, so the phase is a single round trip with no explicit BEGIN."""

    session_id: str = ""
    job_id: uuid.UUID | None = None
    response_body: dict[str, Any] = field(default_factory=dict)

    async def after_transition(self, event: Any, source: Any, target: Any, **kwargs: Any) -> None:
        row = await self.conn.fetchrow(
            _LINK_AND_MOVE,
            self.checkout_id,
            str(getattr(event, "id", event)),
            source.id,
            target.id,
            utcnow(),
            self.session_id,
            self.response_body,
            str(self.job_id),
            self._pending_json(),
            kwargs.get("detail") or {},
        )
        if row is None:
            raise IllegalTransition(
                f"checkout {self.checkout_id} is no longer in state {source.id}",
                checkout_id=str(self.checkout_id),
            )
        self._written(target)


# Phase 1's writes in one statement: the recipient upsert, the checkout (born in the state
# its first transition enters), the order, the job at the default flow's start step, and
# the trace rows. Foreign keys are checked at the end of the statement, when all exist.
_CREATE_CHECKOUT = """
with recipient as (
    insert into h2s_recipients (email_normalized, email, name, phone)
    values ($19, $20, $21, $22)
    on conflict (email_normalized) do update
        set name = excluded.name, phone = excluded.phone, email = excluded.email,
            updated_at = now()
    returning recipient_id
), checkout as (
    insert into h2s_checkouts (
        checkout_id, state, idempotency_key, key_source, derived_key, request_fingerprint,
        request_body, stripe_idempotency_key, created_at, updated_at, locked_until,
        session_request, order_id, job_id)
    values ($1, $4, $8, $9, $10, $11, $12, $13, $14, $5, $15, $16, $17, $18)
    returning checkout_id
), ord as (
    insert into h2s_orders (
        order_id, checkout_id, recipient_id, status, customer, items,
        subtotal_cents, total_cents, currency, created_at, updated_at)
    select $17, c.checkout_id, r.recipient_id, 'pending_payment', $23, $24, $25, $26, $27,
           $14, $14
    from checkout c, recipient r
    returning order_id, recipient_id
), job as (
    insert into h2s_dispatch_jobs (
        job_id, order_id, recipient_id, sequence_id, step_id, status, due_at, metadata,
        created_at, updated_at)
    select $18, o.order_id, o.recipient_id, s.sequence_id, st.step_id, 'queued',
           $14::timestamptz + $28::interval, $29, $14, $14
    from ord o, h2s_dispatch_sequences s
    join h2s_dispatch_steps st on st.sequence_id = s.sequence_id and st.is_start
    where s.is_default
    returning job_id, order_id, recipient_id, sequence_id, step_id, due_at
), steps as (
    insert into h2s_checkout_traces (checkout_id, kind, event, at, duration_ms, detail)
    select c.checkout_id, 'step', s.event, s.at, s.duration_ms, coalesce(s.detail, '{}')
    from checkout c,
         jsonb_to_recordset($7::jsonb) as s(event text, at timestamptz, duration_ms float8,
                                             detail jsonb)
), written as (
    insert into h2s_checkout_traces (checkout_id, kind, event, at, detail)
    select $1, 'step', 'order_and_job.created', $5 - interval '1 microsecond',
           jsonb_build_object(
               'recipient_id', j.recipient_id, 'order_id', j.order_id, 'job_id', j.job_id,
               'sequence_id', j.sequence_id, 'step_id', j.step_id, 'due_at', j.due_at)
    from job j
)
insert into h2s_checkout_traces (checkout_id, kind, event, from_state, to_state, at, detail)
select $1, 'transition', $2, $3, $4, $5, $6 from job
returning seq
"""


@dataclass
class NewCheckout:
    """Everything phase 1 writes for a new checkout."""

    idempotency_key: str | None
    key_source: str
    derived_key: str
    request_fingerprint: str
    request_body: dict[str, Any]
    stripe_idempotency_key: str
    created_at: datetime
    locked_until: datetime
    session_request: dict[str, Any]
    order_id: str
    job_id: uuid.UUID
    email_normalized: str
    email: str
    name: str
    phone: str | None
    customer: dict[str, Any]
    items: list[dict[str, Any]]
    subtotal_cents: int
    total_cents: int
    currency: str


@dataclass
class CheckoutCreationWriter(TraceWriter):
    """Phase 1's listener: the first transition writes the whole new checkout with it."""

    new: NewCheckout | None = None

    async def after_transition(self, event: Any, source: Any, target: Any, **kwargs: Any) -> None:
        n = self.new
        assert n is not None
        row = await self.conn.fetchrow(
            _CREATE_CHECKOUT,
            self.checkout_id,
            str(getattr(event, "id", event)),
            source.id,
            target.id,
            utcnow(),
            kwargs.get("detail") or {},
            self._pending_json(),
            n.idempotency_key,
            n.key_source,
            n.derived_key,
            n.request_fingerprint,
            n.request_body,
            n.stripe_idempotency_key,
            n.created_at,
            n.locked_until,
            n.session_request,
            n.order_id,
            n.job_id,
            n.email_normalized,
            n.email,
            n.name,
            n.phone,
            n.customer,
            n.items,
            n.subtotal_cents,
            n.total_cents,
            n.currency,
            JOB_DUE_AFTER,
            # order_id also in metadata so the seed's verification queries keep working.
            {"order_id": n.order_id, "checkout_trace_id": str(self.checkout_id)},
        )
        if row is None:
            raise LookupError("no default dispatch sequence with a start step is configured")
        self._written(target)
