"""Sign-in on the debug page: the key checked, failed attempts limited per client address
and per key hint tried (domain/limits.py sign_in_bucket says why).

Failures are counted in PostgreSQL (h2s_rate_counters, 15-minute windows), so the limit
holds across replicas. An attempt is counted before the key is checked and given back if
the key was right: concurrent guesses on several replicas cannot get past the limit
between a check and a count. Once a bucket has used up its window, even a right key in it
is refused until the window ends: a guess made then is never tried.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from h2s_checkout.domain.access import Principal
from h2s_checkout.domain.errors import RateLimited
from h2s_checkout.domain.limits import sign_in_bucket
from h2s_checkout.flows.api_keys import KeyRing
from h2s_checkout.observability.logging import get_logger
from h2s_checkout.store import rate_counters
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import utcnow

log = get_logger(__name__)

SIGN_IN_WINDOW = timedelta(minutes=15)


def window_start(now: datetime, window: timedelta) -> datetime:
    size = window.total_seconds()
    return datetime.fromtimestamp(math.floor(now.timestamp() / size) * size, UTC)


class SignInGate:
    def __init__(
        self,
        pool: asyncpg.Pool,
        ring: KeyRing,
        max_failures: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self._ring = ring
        self._max_failures = max_failures
        self._clock = clock

    async def sign_in(self, presented: str, client_address: str | None) -> Principal | None:
        """The principal for the key typed in, or None if it is wrong; RateLimited (429)
        when this address has failed too often with this key (or token) in the window."""
        presented = presented.strip()
        bucket = sign_in_bucket(client_address or "unknown", presented)
        now = self._clock()
        start = window_start(now, SIGN_IN_WINDOW)
        if self._max_failures:
            async with connection(self._pool) as conn:
                allowed = await rate_counters.take_attempt(conn, bucket, start, self._max_failures)
            if not allowed:
                retry_after = max(1, math.ceil((start + SIGN_IN_WINDOW - now).total_seconds()))
                log.warning("sign_in.rate_limited", bucket=bucket, retry_after_s=retry_after)
                raise RateLimited(
                    f"too many failed sign-ins with this key from this address; retry after "
                    f"{retry_after} s",
                    retry_after_s=retry_after,
                )
        principal = await self._ring.from_key(presented) if presented else None
        if principal is None:
            log.warning("sign_in.failed", bucket=bucket)
            return None
        if self._max_failures:
            async with connection(self._pool) as conn:
                await rate_counters.give_back_attempt(conn, bucket, start)
        log.info("sign_in.succeeded", actor=principal.actor)
        return principal
