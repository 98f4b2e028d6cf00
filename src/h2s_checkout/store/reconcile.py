"""SQL for the reconciler: lease checkouts that need help, many replicas at once."""

from __future__ import annotations

from datetime import datetime

import asyncpg

# SKIP LOCKED and the lease written in the same statement: two reconcilers running at
# once never take the same checkout, and a leased one is skipped until the lease ends.
_LEASE_STUCK = """
with stuck as (
    select checkout_id from h2s_checkouts
    where state in ('pending_payment', 'job_queued', 'failed')
      and (locked_until is null or locked_until <= $1)
      and updated_at <= $2
    order by updated_at
    limit $3
    for update skip locked
)
update h2s_checkouts c set locked_until = $4, attempts = c.attempts + 1
from stuck where c.checkout_id = stuck.checkout_id
returning c.*
"""

_LEASE_OPEN_SESSIONS = """
with due as (
    select checkout_id from h2s_checkouts
    where state = 'session_created'
      and (locked_until is null or locked_until <= $1)
      and h2s_session_expires_at(session_request) <= $2
    order by h2s_session_expires_at(session_request)
    limit $3
    for update skip locked
)
update h2s_checkouts c set locked_until = $4
from due where c.checkout_id = due.checkout_id
returning c.*
"""

_LEASE_UNSETTLED = """
with due as (
    select checkout_id from h2s_checkouts
    where needs_settlement and (locked_until is null or locked_until <= $1)
    order by updated_at
    limit $2
    for update skip locked
)
update h2s_checkouts c set locked_until = $3
from due where c.checkout_id = due.checkout_id
returning c.*
"""

_RELEASE = "update h2s_checkouts set locked_until = null where checkout_id = $1"


async def lease_stuck(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    idle_since: datetime,
    until: datetime,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(_LEASE_STUCK, now, idle_since, limit, until)


async def lease_open_sessions(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    expired_before: datetime,
    until: datetime,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(_LEASE_OPEN_SESSIONS, now, expired_before, limit, until)


async def lease_unsettled(
    conn: asyncpg.Connection, *, now: datetime, until: datetime, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(_LEASE_UNSETTLED, now, limit, until)


async def release(conn: asyncpg.Connection, checkout_id: object) -> None:
    await conn.execute(_RELEASE, checkout_id)
