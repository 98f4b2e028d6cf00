"""The key reaper: forgets client Idempotency-Keys past retention (the checkouts stay)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import asyncpg

from h2s_checkout.domain.errors import DatabaseUnavailable
from h2s_checkout.logging import get_logger
from h2s_checkout.store import checkouts
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import utcnow

log = get_logger(__name__)


async def reap_keys(
    pool: asyncpg.Pool, retention: timedelta, clock: Callable[[], datetime] = utcnow
) -> int:
    """One pass; safe on many replicas at once (the update is idempotent)."""
    async with connection(pool) as conn:
        reaped = await checkouts.reap_client_keys(conn, clock() - retention)
    if reaped:
        log.info("keys.reaped", count=reaped, retention_hours=retention.total_seconds() / 3600)
    return reaped


@contextlib.asynccontextmanager
async def reaping(
    pool: asyncpg.Pool, retention: timedelta, every: timedelta = timedelta(minutes=15)
) -> AsyncIterator[None]:
    """Run the reaper in the background for as long as the context is open."""

    async def loop() -> None:
        while True:
            try:
                await reap_keys(pool, retention)
            except (DatabaseUnavailable, asyncpg.PostgresError) as exc:
                log.warning("keys.reap_failed", error=type(exc).__name__)
            await asyncio.sleep(every.total_seconds())

    task = asyncio.create_task(loop(), name="h2s-key-reaper")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
