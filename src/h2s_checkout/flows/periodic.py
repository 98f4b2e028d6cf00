"""Run a pass in the background on an interval, for as long as a context is open."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import asyncpg

from h2s_checkout.domain.errors import CheckoutError
from h2s_checkout.observability.logging import get_logger
from h2s_checkout.store.pool import UNAVAILABLE_ERRORS, database_budget

log = get_logger(__name__)


@contextlib.asynccontextmanager
async def every(
    interval: timedelta, run_pass: Callable[[], Awaitable[object]], *, name: str
) -> AsyncIterator[None]:
    """A failed pass is logged and the next one runs on time; the task ends with the context.

    A pass waits on the database at most the pool's bound (H2S_DB_TIMEOUT_S) in all, so a
    silent database costs one bound per pass, not one per checkout it touches; what it
    could not reach stays leased and the next pass after the lease picks it up.
    """

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval.total_seconds())
            try:
                with database_budget():
                    await run_pass()
            except (CheckoutError, asyncpg.PostgresError, *UNAVAILABLE_ERRORS) as exc:
                log.warning("background.pass_failed", task=name, error=type(exc).__name__)

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
