"""The active catalog and the service area, read from the database at most once per TTL.

A worker prices carts and checks service addresses against this copy without a round
trip; the copy may be older than the database, and phase 1 finds out: it checks the
versions the cart was priced from in the same statement that writes the order
(flows/begin_checkout.py), and on a mismatch the worker reloads (``reload``) and prices
once more. So the TTL bounds only how long a new item or a wider area may go unseen
(``reload`` with ``fresher_than`` lets a refusal look again first), never how old a
price may be charged.

When the TTL has run out, the first request to ask starts the one read and every request
that asks meanwhile waits for that read: a worker under load used to send a read for each
checkout that arrived while the first was on its way (a stampede of round trips at every
expiry, seen as 0.01 extra round trips per checkout in the bench's count). The read runs
in a context of its own, so that it draws on the pool's bound rather than on the budget
of the request that happened to start it; a read that fails fails every request waiting
for it, and the next request starts another.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import dataclass, field

import asyncpg

from h2s_checkout.domain.cart import CatalogItem
from h2s_checkout.domain.catalog import catalog_etag
from h2s_checkout.domain.service_area import ServiceArea
from h2s_checkout.store import catalog
from h2s_checkout.store.pool import connection


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """What one read found: the active items by sku, the area, and when (monotonic)."""

    items: dict[str, CatalogItem] = field(default_factory=dict)
    area: ServiceArea = field(default_factory=ServiceArea)
    loaded_at: float = float("-inf")
    etag: str = '""'


class CatalogCache:
    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 10.0) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._snapshot = CatalogSnapshot()
        self._loading: asyncio.Task[CatalogSnapshot] | None = None
        self._loading_started = float("-inf")
        # A read begun before this moment may hold what this replica has since changed.
        self._valid_from = float("-inf")

    async def items(self) -> dict[str, CatalogItem]:
        return (await self.snapshot()).items

    async def snapshot(self) -> CatalogSnapshot:
        """The cached copy while it is younger than the TTL; else a fresh read."""
        if time.monotonic() - self._snapshot.loaded_at <= self._ttl_s:
            return self._snapshot
        return await self._read(started_after=self._valid_from)

    async def reload(self, *, fresher_than_s: float = 0.0) -> CatalogSnapshot:
        """A copy read from now on (or one less than ``fresher_than_s`` old): a read begun
        before this call may predate the change its caller has seen, so it is not taken."""
        asked = time.monotonic()
        if asked - self._snapshot.loaded_at < fresher_than_s:
            return self._snapshot
        # Any read begun within fresher_than_s is newer than the copy: a flood of refusals
        # shares one read rather than starting one each.
        return await self._read(started_after=asked - fresher_than_s)

    def invalidate(self) -> None:
        """This replica changed the catalog: the next request reads it again."""
        self._valid_from = time.monotonic()
        self._snapshot = CatalogSnapshot()

    async def _read(self, *, started_after: float) -> CatalogSnapshot:
        loading = self._loading
        if loading is None or self._loading_started < started_after:
            self._loading_started = started = time.monotonic()
            loading = self._loading = asyncio.get_running_loop().create_task(
                self._load(started), context=contextvars.Context()
            )
        # A request that stops waiting (its client left) does not cancel the others' read.
        return await asyncio.shield(loading)

    async def _load(self, started: float) -> CatalogSnapshot:
        """One read; ``loaded_at`` is when it began (it sees what committed before)."""
        try:
            async with connection(self._pool) as conn:
                items, area = await catalog.snapshot(conn)
            snapshot = CatalogSnapshot(items, area, started, catalog_etag(items.values()))
            if started >= max(self._snapshot.loaded_at, self._valid_from):
                self._snapshot = snapshot
            return snapshot
        finally:
            if self._loading_started == started:
                self._loading = None
