"""Tell whether a database URL leads to a transaction pooler, and refuse one nobody declared.

Behind a transaction pooler (PgBouncer's ``pool_mode = transaction``) a client connection
is lent a server connection for one transaction at a time, so anything kept on the server
connection (a named prepared statement, ``LISTEN``, a session advisory lock) is left on
it for whichever client gets it next. The service keeps none of these when told
(``H2S_DB_POOLER``); when it is not told, the pooler is detected at start and the start
refused, rather than answering 500s ("prepared statement ... does not exist") under load.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import asyncpg

from h2s_checkout.store.pool import UNAVAILABLE_ERRORS

__all__ = ["PoolerMismatch", "PoolerProbe", "check_database", "probe_pooler"]

_BACKEND = "select pg_backend_pid()"


class PoolerMismatch(RuntimeError):
    """What a database URL leads to contradicts H2S_DB_POOLER; the message says what to set."""


@dataclass(frozen=True, slots=True)
class PoolerProbe:
    # One client connection's two transactions were served by two server backends.
    transaction_pooler: bool
    # A named prepared statement still worked after its connection moved to another
    # backend (PgBouncer 1.21+ with max_prepared_statements); None: not tried.
    keeps_prepared_statements: bool | None = None


async def probe_pooler(dsn: str, *, timeout_s: float, prepared: bool = False) -> PoolerProbe | None:
    """Two client connections, a few statements: None if the database cannot be reached
    (whatever uses it next says so in its own words).

    On PostgreSQL itself a client connection is one backend for its life, and two client
    connections open at once are two backends. Behind a transaction pooler, connection A's
    backend goes back to the pool after each statement: B's transaction is then lent it
    (PgBouncer reuses the server connection released last), or A's next statement gets
    another one while B holds its own. Either is impossible without a pooler, so the
    probe never takes PostgreSQL for a pooler; a session pooler is, rightly, not seen.
    """
    conns: list[asyncpg.Connection] = []
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(2):
                # No statement cache: these statements must work through any pooler.
                conns.append(await asyncpg.connect(dsn, statement_cache_size=0))
            a, b = conns
            named = None
            if prepared:
                # Made on A's backend; run again below once A has moved to another.
                named = await a.prepare(_BACKEND, name=f"h2s_probe_{secrets.token_hex(6)}")
            first = await a.fetchval(_BACKEND)
            async with b.transaction():
                held = await b.fetchval(_BACKEND)
                again = await a.fetchval(_BACKEND)
                pooled = held == first or again != first
                keeps: bool | None = None
                if named is not None and pooled:
                    try:
                        await named.fetchval()
                        keeps = True
                    except asyncpg.PostgresError:
                        keeps = False
            return PoolerProbe(pooled, keeps)
    except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError):
        return None
    finally:
        for conn in conns:
            conn.terminate()


_UNDECLARED = (
    "DATABASE_URL leads to a transaction pooler (PgBouncer's pool_mode = transaction?): "
    "one client connection was served by two PostgreSQL backends, and the prepared "
    "statements the service keeps would fail there. Set H2S_DB_POOLER=transaction, and "
    "H2S_DATABASE_DIRECT_URL to the server itself for migrations and the event loop's "
    "LISTEN (docs/scaling.md, 'Behind PgBouncer')"
)
_NOT_KEPT = (
    "H2S_DB_POOLER=transaction-prepared, but the pooler at DATABASE_URL does not keep "
    "prepared statements across server connections (PgBouncer before 1.21, or "
    "max_prepared_statements = 0): set H2S_DB_POOLER=transaction"
)
_DIRECT_POOLED = (
    "H2S_DATABASE_DIRECT_URL leads to a transaction pooler, not to the server itself: "
    "LISTEN and the migration lock need the server's own address"
)


# What passed in this process is not probed again: a command checks at its start and then
# opens its services, and the test suite opens hundreds of apps on one database, each of
# which would otherwise pay two more connections (10 to 20 ms).
_passed: set[tuple[str, str, str | None]] = set()


async def check_database(
    database_url: str, pooler: str, direct_url: str | None, *, timeout_s: float
) -> None:
    """Raise PoolerMismatch if DATABASE_URL or H2S_DATABASE_DIRECT_URL is not what
    H2S_DB_POOLER says. Run at start: two connections and a few statements per URL."""
    if (database_url, pooler, direct_url) in _passed:
        return
    answered = True
    if pooler != "transaction":  # "transaction" keeps nothing, so any database will do
        found = await probe_pooler(
            database_url, timeout_s=timeout_s, prepared=pooler == "transaction-prepared"
        )
        answered = found is not None
        if found is not None and found.transaction_pooler:
            if pooler == "none":
                raise PoolerMismatch(_UNDECLARED)
            if found.keeps_prepared_statements is False:
                raise PoolerMismatch(_NOT_KEPT)
    if direct_url is not None:
        found = await probe_pooler(direct_url, timeout_s=timeout_s)
        answered = answered and found is not None
        if found is not None and found.transaction_pooler:
            raise PoolerMismatch(_DIRECT_POOLED)
    if answered:  # a database that could not be reached is probed again next time
        _passed.add((database_url, pooler, direct_url))
