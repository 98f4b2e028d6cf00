"""The key reaper: forgets client Idempotency-Keys past retention, those of checkouts and
those of operators' requests (the checkouts and the orders stay)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

from h2s_checkout.logging import get_logger
from h2s_checkout.store import checkouts, refunds
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
