"""Telling a transaction pooler from PostgreSQL itself, on a real PgBouncer 1.18."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from h2s_checkout.store.pool import connection, create_pool
from h2s_checkout.store.pooler import PoolerMismatch, PoolerProbe, check_database, probe_pooler


async def test_postgresql_itself_is_never_taken_for_a_pooler(database_url):
    for _ in range(5):
        assert await probe_pooler(database_url, timeout_s=5, prepared=True) == PoolerProbe(False)


async def test_pgbouncer_in_transaction_mode_is_seen_and_keeps_no_prepared_statement(pgbouncer):
    for _ in range(5):
        found = await probe_pooler(pgbouncer.dsn, timeout_s=5, prepared=True)
        assert found == PoolerProbe(True, keeps_prepared_statements=False)


async def test_a_database_that_cannot_be_reached_is_left_to_whatever_comes_next():
    assert await probe_pooler("postgresql://postgres@127.0.0.1:1/x", timeout_s=2) is None


@pytest.mark.parametrize(
    ("pooler", "direct", "says"),
    [
        ("none", False, "H2S_DB_POOLER=transaction"),
        # PgBouncer 1.18 keeps no prepared statements for its clients (1.21+ can).
        ("transaction-prepared", False, "set H2S_DB_POOLER=transaction"),
        ("transaction", True, "H2S_DATABASE_DIRECT_URL leads to a transaction pooler"),
    ],
)
async def test_a_database_that_is_not_what_the_setting_says_is_refused(
    pgbouncer, database_url, pooler, direct, says
):
    with pytest.raises(PoolerMismatch, match=says):
        await check_database(
            pgbouncer.dsn if not direct else database_url,
            pooler,
            pgbouncer.dsn if direct else None,
            timeout_s=5,
        )


async def test_what_the_setting_says_is_accepted(pgbouncer, database_url):
    await check_database(pgbouncer.dsn, "transaction", database_url, timeout_s=5)
    await check_database(pgbouncer.dsn, "transaction", None, timeout_s=5)
    await check_database(database_url, "none", None, timeout_s=5)


async def test_without_prepared_statements_the_pool_works_through_pgbouncer(pgbouncer):
    """The pool the service uses under H2S_DB_POOLER=transaction: statements and
    transactions from many connections at once, none failing on another's backend."""
    pool = await create_pool(pgbouncer.dsn, min_size=4, max_size=8, prepared_statements=False)

    async def one(n: int) -> int:
        async with connection(pool) as conn, conn.transaction():
            await conn.fetchval("select pg_backend_pid()")
            return int(await conn.fetchval("select $1::int + 1", n))

    try:
        for _ in range(5):
            assert await asyncio.gather(*(one(n) for n in range(40))) == [n + 1 for n in range(40)]
            assert await asyncio.gather(
                *(pool.fetchval("select $1::text", str(n)) for n in range(40))
            ) == [str(n) for n in range(40)]
    finally:
        await pool.close()


async def test_with_prepared_statements_the_same_pool_fails_through_pgbouncer(pgbouncer):
    """Why the setting exists: asyncpg's named statements meet other clients' backends."""
    pool = await create_pool(pgbouncer.dsn, min_size=4, max_size=8)
    try:
        failures = []
        for _ in range(5):
            answers = await asyncio.gather(
                *(pool.fetchval("select $1::text", str(n)) for n in range(40)),
                return_exceptions=True,
            )
            failures += [a for a in answers if isinstance(a, asyncpg.PostgresError)]
        assert failures
    finally:
        await pool.close()
