"""The active catalog, read from the database at most once per TTL."""

from __future__ import annotations

import time

import asyncpg

from h2s_checkout.domain.cart import CatalogItem
from h2s_checkout.store import catalog
from h2s_checkout.store.pool import connection


class CatalogCache:
    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 10.0) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._items: dict[str, CatalogItem] = {}
        self._loaded_at = float("-inf")

    async def items(self) -> dict[str, CatalogItem]:
        # Prices change rarely; a short TTL bounds how long an old price can be charged.
        if time.monotonic() - self._loaded_at > self._ttl_s:
            async with connection(self._pool) as conn:
                self._items = await catalog.active_items(conn)
            self._loaded_at = time.monotonic()
        return self._items
