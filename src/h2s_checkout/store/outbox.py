"""SQL for outbound events: subscribers (endpoints), the outbox, deliveries and attempts.

An event is written by the server-side function ``h2s_enqueue_order_event``
(db/migrations/*_event_outbox.sql) inside the statement or transaction that changes the
order; ``h2s_link_session`` calls it for order.created. An event keeps the traceparent
of the sampled span that wrote it (``h2s_events.traceparent``, *_otel_trace_context.sql),
and is delivered in that trace. The trigger function
``h2s_event_delivery_to_enabled_endpoint``
(db/migrations/*_event_deliveries_only_to_enabled_endpoints.sql) keeps a delivery from
being written for an endpoint a concurrent disable has ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from h2s_checkout.observability import tracing

NOTIFY_CHANNEL = "h2s_events"

_ENQUEUE = "select h2s_enqueue_order_event($1, $2)"
_ENQUEUE_TRACED = "select h2s_enqueue_order_event(h2s_in_trace($3, $1::text), $2)"


async def enqueue_order_event(
    conn: asyncpg.Connection, order_id: str, event_type: str
) -> str | None:
    """Write one event about an order in the caller's transaction; its id, or None when no
    enabled endpoint takes this type (then nothing is written).

    Call it after the change it reports, in the same transaction: the event snapshots the
    order and its job as they are then, and rolls back with the change.
    """
    traceparent = tracing.traceparent()
    event_id: str | None = (
        await conn.fetchval(_ENQUEUE, order_id, event_type)
        if traceparent is None
        else await conn.fetchval(_ENQUEUE_TRACED, order_id, event_type, traceparent)
    )
    return event_id


# -- endpoints --------------------------------------------------------------------------

_INSERT_ENDPOINT = """
insert into h2s_event_endpoints (endpoint_id, url, description, event_types, secret)
values ($1, $2, $3, $4, $5)
returning endpoint_id, url, description, event_types, status, status_reason, source, created_at,
       updated_at, previous_secret_until, secret
"""

_LIST_ENDPOINTS = """
select endpoint_id, url, description, event_types, status, status_reason, source, created_at,
       updated_at, previous_secret_until
from h2s_event_endpoints
where status <> 'deleted'
order by created_at, endpoint_id
"""

_GET_ENDPOINT = """
select endpoint_id, url, description, event_types, status, status_reason, source, created_at,
       updated_at, previous_secret_until
from h2s_event_endpoints
where endpoint_id = $1 and status <> 'deleted'
"""

# Ending an endpoint takes its row first and its deliveries' rows after, as everything
# that may wait for both does (a 410's record, a retry; the lease waits for neither, SKIP
# LOCKED, and the check before sending locks the endpoint's row only): one lock order, so
# no deadlock can roll back an attempt's record (issue 29). The update
# waits for event transactions still writing deliveries for it (they hold the row FOR
# SHARE, db/migrations/*_event_deliveries_only_to_enabled_endpoints.sql), and the
# cancelling is a statement of its own so that its snapshot sees what they committed.
_END_ENDPOINT = """
update h2s_event_endpoints set status = $2, status_reason = $3, updated_at = now()
where endpoint_id = $1 and status <> 'deleted'
returning endpoint_id
"""

_CANCEL_PENDING = """
update h2s_event_deliveries set status = 'cancelled', last_error = $2
where endpoint_id = $1 and status = 'pending'
"""

_ROTATE_SIGNING = """
update h2s_event_endpoints
set previous_secret = secret, previous_secret_until = $3, secret = $2, updated_at = now()
where endpoint_id = $1 and status <> 'deleted'
returning endpoint_id, url, description, event_types, status, status_reason, source, created_at,
       updated_at, previous_secret_until, secret
"""

# The subscriber set by H2S_EVENT_ENDPOINT_URL: written at start-up by every replica.
_UPSERT_ENVIRONMENT_ENDPOINT = """
insert into h2s_event_endpoints (
    endpoint_id, url, description, event_types, secret, source)
values ($1, $2, 'set by H2S_EVENT_ENDPOINT_URL', '{*}', $3, 'environment')
on conflict (endpoint_id) do update
set url = excluded.url, secret = excluded.secret, status = 'enabled', status_reason = null,
    updated_at = now()
where (h2s_event_endpoints.url, h2s_event_endpoints.secret, h2s_event_endpoints.status)
      is distinct from (excluded.url, excluded.secret, 'enabled')
"""


async def insert_endpoint(
    conn: asyncpg.Connection,
    endpoint_id: str,
    *,
    url: str,
    description: str,
    event_types: list[str],
    secret: str,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        _INSERT_ENDPOINT, endpoint_id, url, description, event_types, secret
    )
    return row


async def list_endpoints(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(_LIST_ENDPOINTS)


async def get_endpoint(conn: asyncpg.Connection, endpoint_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_GET_ENDPOINT, endpoint_id)


async def end_endpoint(
    conn: asyncpg.Connection, endpoint_id: str, *, status: str, reason: str
) -> bool:
    """Disable or delete an endpoint and cancel what it still had to receive."""
    async with conn.transaction():
        if not await mark_endpoint_ended(conn, endpoint_id, status=status, reason=reason):
            return False
        await cancel_pending(conn, endpoint_id, reason=reason)
    return True


async def mark_endpoint_ended(
    conn: asyncpg.Connection, endpoint_id: str, *, status: str, reason: str
) -> bool:
    """The first half of ``end_endpoint``, holding the endpoint's row until the caller's
    transaction ends: call it before touching the endpoint's deliveries."""
    return await conn.fetchval(_END_ENDPOINT, endpoint_id, status, reason) is not None


async def cancel_pending(conn: asyncpg.Connection, endpoint_id: str, *, reason: str) -> None:
    """The second half: after ``mark_endpoint_ended``, in its transaction."""
    await conn.execute(_CANCEL_PENDING, endpoint_id, reason)


async def rotate_secret(
    conn: asyncpg.Connection, endpoint_id: str, *, secret: str, previous_until: datetime
) -> asyncpg.Record | None:
    return await conn.fetchrow(_ROTATE_SIGNING, endpoint_id, secret, previous_until)


async def upsert_environment_endpoint(
    conn: asyncpg.Connection, endpoint_id: str, url: str, secret: str
) -> None:
    await conn.execute(_UPSERT_ENVIRONMENT_ENDPOINT, endpoint_id, url, secret)


# -- deliveries -------------------------------------------------------------------------

# SKIP LOCKED and the lease in the same statement, as the reconciler's: replicas never take
# the same delivery. The lease is next_attempt_at moved past the attempt's timeout; the
# attempt number is taken here, so an attempt lost with its process leaves a gap. The
# endpoint's row is taken FOR SHARE, skipped while a disable holds it (it cancels these
# deliveries next) and read again once that disable has committed.
_LEASE_DUE = """
with due as (
    select d.delivery_id from h2s_event_deliveries d
    join h2s_event_endpoints p on p.endpoint_id = d.endpoint_id and p.status = 'enabled'
    where d.status = 'pending' and d.next_attempt_at <= $1
    order by d.next_attempt_at, d.created_at
    limit $2
    for update of d skip locked
    for share of p skip locked
)
update h2s_event_deliveries d
set next_attempt_at = $3, attempts = d.attempts + 1, tries = d.tries + 1
from due, h2s_events e, h2s_event_endpoints p
where d.delivery_id = due.delivery_id and e.event_id = d.event_id
  and p.endpoint_id = d.endpoint_id
returning d.delivery_id, d.attempts, d.tries, e.event_id, e.type, e.body,
          e.created_at as event_created_at, e.traceparent, p.endpoint_id, p.url, p.secret,
          p.previous_secret, p.previous_secret_until
"""

# Right before a leased attempt is sent: is the endpoint still enabled, and the lease
# still this attempt's? The endpoint's row is read FOR SHARE, so this waits for a
# disable in progress and then sees it: once a 410 (or an operator) has ended the
# endpoint, no check passes, in any worker or replica. Only the endpoint's row is locked
# (the delivery's row is the lease's already), so the lock order stays endpoint first.
_CLEAR_TO_SEND = """
select 1 from h2s_event_deliveries d
join h2s_event_endpoints p on p.endpoint_id = d.endpoint_id
where d.delivery_id = $1 and d.attempts = $2 and d.status = 'pending'
  and p.status = 'enabled'
for share of p
"""

# The attempt's row and the delivery's new state in one statement. A result that comes
# back after its lease was taken over, or after its delivery was cancelled (its endpoint
# ended meanwhile), is kept as an attempt but changes nothing else: the request went out.
_RECORD_ATTEMPT = """
with attempt as (
    insert into h2s_event_attempts (
        delivery_id, attempt, started_at, duration_ms, status_code, error, response_body)
    values ($1, $2, $3, $4, $5, $6, $7)
)
update h2s_event_deliveries
set status = $8, next_attempt_at = coalesce($9, next_attempt_at), last_status_code = $5,
    last_error = $6, delivered_at = case when $8 = 'delivered' then clock_timestamp() end
where delivery_id = $1 and attempts = $2 and status = 'pending'
"""

# The endpoint's row FOR SHARE before the delivery's (the one lock order): a retry racing
# a disable either comes first and is cancelled by it, or waits and finds it disabled.
_RETRY_DELIVERY = """
with enabled as (
    select p.endpoint_id from h2s_event_endpoints p
    join h2s_event_deliveries d on d.endpoint_id = p.endpoint_id
    where d.delivery_id = $1 and p.status = 'enabled'
    for share of p
), retried as (
    update h2s_event_deliveries d
    set status = 'pending', tries = 0, next_attempt_at = '-infinity', last_error = null
    from enabled
    where d.delivery_id = $1 and d.endpoint_id = enabled.endpoint_id
    returning d.delivery_id
)
select delivery_id, pg_notify('h2s_events', '') from retried
"""

_GET_DELIVERY = """
select d.delivery_id, d.endpoint_id, p.status as endpoint_status
from h2s_event_deliveries d join h2s_event_endpoints p on p.endpoint_id = d.endpoint_id
where d.delivery_id = $1
"""

_LIST_DELIVERIES = """
select d.delivery_id, d.event_id, d.endpoint_id, d.status, d.attempts,
       -- due at once ('-infinity') reads as due since it was written
       greatest(d.next_attempt_at, d.created_at) as next_attempt_at, d.last_status_code,
       d.last_error, d.created_at, d.delivered_at,
       e.type, e.order_id, e.sequence,
       coalesce((select jsonb_agg(jsonb_build_object(
                        'attempt', a.attempt, 'started_at', a.started_at,
                        'duration_ms', a.duration_ms, 'status_code', a.status_code,
                        'error', a.error, 'response_body', a.response_body)
                        order by a.attempt)
                 from h2s_event_attempts a where a.delivery_id = d.delivery_id),
                '[]'::jsonb) as attempt_list
from h2s_event_deliveries d
join h2s_events e on e.event_id = d.event_id
where d.endpoint_id = $1 and ($2::text is null or d.status = $2)
order by d.created_at desc, d.delivery_id
limit $3
"""

# An order's events, each with its deliveries and their attempts, for the timeline.
_ORDER_EVENTS = """
select e.event_id, e.type, e.sequence, e.created_at,
       coalesce((select jsonb_agg(jsonb_build_object(
                        'delivery_id', d.delivery_id, 'endpoint_id', d.endpoint_id,
                        'url', p.url, 'status', d.status, 'attempts',
                        coalesce((select jsonb_agg(jsonb_build_object(
                                         'attempt', a.attempt, 'started_at', a.started_at,
                                         'duration_ms', a.duration_ms,
                                         'status_code', a.status_code, 'error', a.error,
                                         'response_body', a.response_body)
                                         order by a.attempt)
                                  from h2s_event_attempts a
                                  where a.delivery_id = d.delivery_id), '[]'::jsonb))
                        order by d.created_at, d.delivery_id)
                 from h2s_event_deliveries d
                 join h2s_event_endpoints p on p.endpoint_id = d.endpoint_id
                 where d.event_id = e.event_id), '[]'::jsonb) as deliveries
from h2s_events e
where e.order_id = $1
order by e.sequence
"""


async def lease_due(
    conn: asyncpg.Connection, *, now: datetime, until: datetime, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(_LEASE_DUE, now, limit, until)


async def clear_to_send(conn: asyncpg.Connection, delivery_id: str, attempt: int) -> bool:
    """Whether a leased attempt may leave now (``_CLEAR_TO_SEND``)."""
    return await conn.fetchval(_CLEAR_TO_SEND, delivery_id, attempt) is not None


async def record_attempt(
    conn: asyncpg.Connection,
    delivery_id: str,
    attempt: int,
    *,
    started_at: datetime,
    duration_ms: float,
    status_code: int | None,
    error: str | None,
    response_body: str | None,
    status: str,
    next_attempt_at: datetime | None,
) -> None:
    await conn.execute(
        _RECORD_ATTEMPT,
        delivery_id,
        attempt,
        started_at,
        duration_ms,
        status_code,
        error,
        response_body,
        status,
        next_attempt_at,
    )


async def retry_delivery(conn: asyncpg.Connection, delivery_id: str) -> bool:
    """Make a delivery due at once with a fresh schedule; False if its endpoint is not
    enabled (or there is no such delivery)."""
    return await conn.fetchrow(_RETRY_DELIVERY, delivery_id) is not None


async def get_delivery(conn: asyncpg.Connection, delivery_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_GET_DELIVERY, delivery_id)


async def list_deliveries(
    conn: asyncpg.Connection, endpoint_id: str, *, status: str | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(_LIST_DELIVERIES, endpoint_id, status, limit)


async def order_events(conn: asyncpg.Connection, order_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(_ORDER_EVENTS, order_id)
    return [dict(r) for r in rows]


# Events past retention whose deliveries have all ended (delivered, failed, cancelled),
# oldest first, a batch at a time; their deliveries and attempts go with them (on delete
# cascade). Each order's highest deleted sequence is kept in h2s_event_sequence_floors,
# under the order's row lock (h2s_enqueue_order_event takes the same lock first), so the
# order's next event counts on from it: a receiver drops an event whose sequence is not
# above the last it saw.
_PRUNE_EVENTS = """
with ended as (
    select e.event_id, e.order_id, e.sequence
    from h2s_events e
    where e.created_at < $1
      and not exists (select 1 from h2s_event_deliveries d
                      where d.event_id = e.event_id and d.status = 'pending')
    order by e.created_at
    limit $2
    for update of e skip locked
), locked as (
    select o.order_id from h2s_orders o
    where o.order_id in (select order_id from ended)
    order by o.order_id
    for no key update of o
), floors as (
    insert into h2s_event_sequence_floors as f (order_id, sequence)
    select ended.order_id, max(ended.sequence)
    from ended join locked using (order_id)
    group by ended.order_id
    on conflict (order_id) do update set sequence = greatest(f.sequence, excluded.sequence)
)
delete from h2s_events e using ended where e.event_id = ended.event_id
"""


async def prune_events(conn: asyncpg.Connection, before: datetime, *, batch: int) -> int:
    """Delete up to ``batch`` ended events written before ``before``; how many went."""
    status: str = await conn.execute(_PRUNE_EVENTS, before, batch)
    return int(status.rsplit(" ", 1)[1])
