"""SQL for a checkout and the rows it owns: recipient, order, dispatch job, failures.

Phase 1 and phase 3 are the server-side functions ``h2s_begin_checkout`` and
``h2s_link_session`` (db/migrations/*_h2s_begin_checkout*.sql, *_h2s_link_session.sql):
one round trip each. Phase 1 also checks and counts the limits on new checkouts
(*_h2s_begin_checkout_limits.sql).

In a sampled span each statement writing trace rows is sent in its ``_TRACED`` form, which
sets the span's traceparent in the function's first argument (``h2s_in_trace``,
*_otel_trace_context.sql): the rows take its trace id, in the same statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from h2s_checkout.observability import tracing

JOB_DUE_AFTER = timedelta(hours=24)

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


_json = msgspec.json.Encoder()

_BEGIN_CHECKOUT = (
    "select * from h2s_begin_checkout($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
)
_BEGIN_CHECKOUT_TRACED = (
    "select * from h2s_begin_checkout("
    "h2s_in_trace($13, $1::text), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
)


@dataclass(frozen=True, slots=True)
class ClaimKeys:
    """How a request is matched to an earlier checkout it may be a retry of."""

    key_source: str  # "client" (Idempotency-Key header) or "derived" (email, cart, address)
    idempotency_key: str | None
    derived_key: str
    request_fingerprint: str

    @property
    def lookup_key(self) -> str:
        """The key the checkout is looked up by: the client's, or the derived one."""
        if self.key_source == "client" and self.idempotency_key is not None:
            return f"client:{self.idempotency_key}"
        return f"derived:{self.derived_key}"


async def begin_checkout(
    conn: asyncpg.Connection,
    keys: ClaimKeys,
    *,
    window_start: datetime,
    now: datetime,
    lease_until: datetime,
    new: dict[str, Any] | None,
    steps: list[dict[str, Any]] | None,
    transition: dict[str, Any] | None,
    limits: Sequence[tuple[str, int]] = (),
) -> asyncpg.Record:
    """Phase 1 in one round trip: the row's ``outcome`` is created, replayed, resumed,
    conflict, key_reused or rate_limited (see the function's migration). ``limits``:
    (bucket, most new checkouts per minute), checked and counted on the create path only.

    With ``new``, ``steps`` and ``transition`` None (a call expecting a replay), the
    outcome is replayed, key_reused, or absent: no answered checkout has this key, nothing
    was written, and the whole call must follow."""
    traceparent = tracing.traceparent()
    row: asyncpg.Record = await conn.fetchrow(
        _BEGIN_CHECKOUT if traceparent is None else _BEGIN_CHECKOUT_TRACED,
        keys.key_source,
        keys.idempotency_key,
        keys.derived_key,
        keys.request_fingerprint,
        window_start,
        now,
        lease_until,
        # As text: the function parses it only if it writes the new checkout.
        None if new is None else _json.encode(new).decode(),
        steps,
        transition,
        [bucket for bucket, _ in limits],
        [limit for _, limit in limits],
        *(() if traceparent is None else (traceparent,)),
    )
    return row


_REPLAY_CHECKOUTS = "select * from h2s_replay_checkouts($1, $2, $3, $4, $5, $6)"
_REPLAY_CHECKOUTS_TRACED = (
    "select * from h2s_replay_checkouts(h2s_in_trace($7, $1::text[]), $2, $3, $4, $5, $6)"
)


@dataclass(frozen=True, slots=True)
class ReplayCall:
    """One request's part of ``replay_checkouts``: its keys, and the moments phase 1
    would be called with."""

    keys: ClaimKeys
    window_start: datetime
    now: datetime


async def replay_checkouts(
    conn: asyncpg.Connection, calls: Sequence[ReplayCall], *, traceparent: str | None = None
) -> list[asyncpg.Record]:
    """Several calls of ``begin_checkout`` expecting a replay, in one round trip and one
    transaction; a row per call, in order, each with the outcome that call alone would
    have had (replayed, key_reused or absent). ``traceparent``: the one trace all the
    calls' trace rows belong to, if they share one (the calls are made by one task for
    many requests, so it is given rather than read from the current span)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        _REPLAY_CHECKOUTS if traceparent is None else _REPLAY_CHECKOUTS_TRACED,
        [c.keys.key_source for c in calls],
        [c.keys.idempotency_key for c in calls],
        [c.keys.derived_key for c in calls],
        [c.keys.request_fingerprint for c in calls],
        [c.window_start for c in calls],
        [c.now for c in calls],
        *(() if traceparent is None else (traceparent,)),
    )
    if len(rows) != len(calls):
        raise RuntimeError(f"h2s_replay_checkouts answered {len(rows)} rows for {len(calls)}")
    return rows


_LINK_SESSION = "select * from h2s_link_session($1, $2, $3, $4, $5, $6, $7, $8)"
_LINK_SESSION_TRACED = (
    "select * from h2s_link_session(h2s_in_trace($9, $1::uuid), $2, $3, $4, $5, $6, $7, $8)"
)


async def link_session(
    conn: asyncpg.Connection,
    checkout_id: uuid.UUID,
    *,
    source: str,
    target: str,
    at: datetime,
    session_id: str,
    job_id: uuid.UUID,
    response_body: dict[str, Any],
    trace: list[dict[str, Any]],
) -> asyncpg.Record:
    """Phase 3 in one round trip; ``linked`` is false when the checkout had left
    ``source`` (then the row carries its state and stored answer)."""
    traceparent = tracing.traceparent()
    row: asyncpg.Record = await conn.fetchrow(
        _LINK_SESSION if traceparent is None else _LINK_SESSION_TRACED,
        checkout_id,
        source,
        target,
        at,
        session_id,
        job_id,
        response_body,
        trace,
        *(() if traceparent is None else (traceparent,)),
    )
    return row
