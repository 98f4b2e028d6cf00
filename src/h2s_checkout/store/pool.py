"""The asyncpg pool, with jsonb decoded to Python values by msgspec."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import msgspec

from h2s_checkout.domain.errors import DatabaseUnavailable

# What a lost or refused database connection looks like through asyncpg; each means
# "try again later" (503), never "the request was wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.InterfaceError,
    # Raised when a connection broken mid-query is reset on its way back to the pool.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
)

_encoder = msgspec.json.Encoder()


def _encode_json(value: object) -> str:
    return _encoder.encode(value).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(
            type_name, encoder=_encode_json, decoder=msgspec.json.decode, schema="pg_catalog"
        )


# The same, plus the service's own DatabaseUnavailable (what `connection` turns them into).
UNAVAILABLE_OR_DOWN: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, DatabaseUnavailable)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (a round trip on every release).

    Nothing here outlives a transaction: advisory locks are transaction-scoped, and there
    is no LISTEN, SET or cursor; asyncpg still rolls back a transaction left open.
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=_keep_session,
        command_timeout=30,
        # Connections are recycled so a restarted database is picked up without a restart here.
        max_inactive_connection_lifetime=60,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def connection(
    pool: asyncpg.Pool, *, acquire_timeout_s: float = 5.0
) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; a database that cannot be reached becomes DatabaseUnavailable."""
    try:
        async with pool.acquire(timeout=acquire_timeout_s) as conn:
            yield conn
    except UNAVAILABLE_ERRORS as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
