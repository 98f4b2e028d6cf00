"""The reapers: forget client Idempotency-Keys past retention, those of checkouts and
those of operators' requests (the checkouts and the orders stay), sign-in sessions and
limit counters whose time is over, and outbound events whose deliveries ended long ago."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

from h2s_checkout.observability.logging import get_logger
from h2s_checkout.store import admin_sessions, checkouts, outbox, rate_counters, refunds
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import utcnow

log = get_logger(__name__)


async def reap_keys(
    pool: asyncpg.Pool, retention: timedelta, clock: Callable[[], datetime] = utcnow
) -> int:
    """One pass; safe on many replicas at once (the update is idempotent)."""
    async with connection(pool) as conn:
        reaped = await checkouts.reap_client_keys(conn, clock() - retention)
        reaped += await refunds.reap_request_keys(conn, clock() - retention)
    if reaped:
        log.info("keys.reaped", count=reaped, retention_hours=retention.total_seconds() / 3600)
    return reaped


# Counter windows are one minute (checkouts) and 15 minutes (sign-ins): an hour is past both.
COUNTER_RETENTION = timedelta(hours=1)


async def reap_sessions_and_counters(
    pool: asyncpg.Pool, clock: Callable[[], datetime] = utcnow
) -> tuple[int, int]:
    """One pass: expired sign-in sessions and past limit windows; safe on many replicas."""
    now = clock()
    async with connection(pool) as conn:
        sessions = await admin_sessions.purge_expired_sessions(conn, now)
        counters = await rate_counters.purge_windows_before(conn, now - COUNTER_RETENTION)
    if sessions or counters:
        log.info("access.reaped", sessions=sessions, counter_windows=counters)
    return sessions, counters


# A pass deletes at most EVENT_BATCHES x EVENT_BATCH events, each batch its own short
# statement, so it stays well inside the pass's database bound; a backlog (retention
# shortened, or the reaper off for a while) drains over the following passes.
EVENT_BATCH = 5_000
EVENT_BATCHES = 10


async def reap_events(
    pool: asyncpg.Pool, retention: timedelta, clock: Callable[[], datetime] = utcnow
) -> int:
    """One pass over the outbox: events older than ``retention`` whose deliveries have
    all ended go, with their deliveries and attempts; an event still being delivered
    stays. An order's next event counts on from the last sequence deleted. Safe on many
    replicas at once (SKIP LOCKED)."""
    before = clock() - retention
    reaped = 0
    for _ in range(EVENT_BATCHES):
        async with connection(pool) as conn:
            count = await outbox.prune_events(conn, before, batch=EVENT_BATCH)
        reaped += count
        if count < EVENT_BATCH:
            break
    if reaped:
        log.info("events.reaped", count=reaped, retention_days=retention.days)
    return reaped
