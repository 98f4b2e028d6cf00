"""The catalog cache reads the catalog once per expiry, however many checkouts ask."""

from __future__ import annotations

import asyncio

import asyncpg

from h2s_checkout.flows.catalog_cache import CatalogCache
from h2s_checkout.store.pool import create_pool
from support import most_waiting_for


async def test_checkouts_that_find_the_catalog_expired_together_share_one_read(database_url, db):
    pool = await create_pool(database_url, min_size=1, max_size=8)
    holder = await asyncpg.connect(database_url)
    try:
        cache = CatalogCache(pool, ttl_s=60)
        tx = holder.transaction()
        await tx.start()
        # The catalog's table held: a read of it waits inside PostgreSQL, where it is seen.
        await holder.execute("lock table h2s_service_catalog in access exclusive mode")
        asking = [asyncio.create_task(cache.items()) for _ in range(8)]
        seen = await most_waiting_for(holder, polls=25)
        await tx.rollback()
        answers = await asyncio.wait_for(asyncio.gather(*asking), timeout=10)
    finally:
        await holder.close()
        await pool.close()

    assert seen == 1  # one read on its way; before, one per checkout up to the pool's size
    assert answers[0]  # the seeded catalog
    assert all(a == answers[0] for a in answers)


async def test_a_failed_read_fails_its_waiters_and_the_next_request_reads_again(database_url, db):
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        cache = CatalogCache(pool, ttl_s=60)
        await db.execute("alter table h2s_service_catalog rename to h2s_service_catalog_away")
        try:
            results = await asyncio.gather(cache.items(), cache.items(), return_exceptions=True)
        finally:
            await db.execute("alter table h2s_service_catalog_away rename to h2s_service_catalog")
        assert all(isinstance(r, asyncpg.UndefinedTableError) for r in results)

        assert await cache.items()  # a new read, not the failed one
    finally:
        await pool.close()


async def test_within_the_ttl_nothing_is_read(database_url, db):
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        cache = CatalogCache(pool, ttl_s=60)
        first = await cache.items()
        await db.execute("alter table h2s_service_catalog rename to h2s_service_catalog_away")
        try:
            assert await cache.items() == first  # no read: the table's absence goes unseen
        finally:
            await db.execute("alter table h2s_service_catalog_away rename to h2s_service_catalog")
    finally:
        await pool.close()


async def test_a_reload_reads_what_committed_before_it_and_refusals_share_one_read(
    database_url, db
):
    pool = await create_pool(database_url, min_size=1, max_size=4)
    holder = await asyncpg.connect(database_url)
    try:
        cache = CatalogCache(pool, ttl_s=60)
        first = await cache.snapshot()
        await db.execute("update h2s_service_catalog set version = 2 where sku = 'tv-mount'")
        assert (await cache.snapshot()) is first  # within the TTL: the copy
        assert (await cache.reload()).items["tv-mount"].version == 2

        tx = holder.transaction()
        await tx.start()
        await holder.execute("lock table h2s_service_catalog in access exclusive mode")
        cache.invalidate()
        refusals = [asyncio.create_task(cache.reload(fresher_than_s=1.0)) for _ in range(6)]
        seen = await most_waiting_for(holder, polls=25)
        await tx.rollback()
        answers = await asyncio.wait_for(asyncio.gather(*refusals), timeout=10)
    finally:
        await holder.close()
        await pool.close()
    assert seen == 1
    assert all(a is answers[0] for a in answers)
