"""The asyncpg pool: jsonb through msgspec, TCP keepalives, and a bound on every wait."""

from __future__ import annotations

import asyncio
import contextvars
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
import msgspec

from h2s_checkout.domain.errors import DatabaseUnavailable
from h2s_checkout.observability import tracing
from h2s_checkout.observability.logging import get_logger

log = get_logger(__name__)

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

# The same, plus the service's own DatabaseUnavailable (what `connection` turns them into).
UNAVAILABLE_OR_DOWN: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, DatabaseUnavailable)

DEFAULT_TIMEOUT_S = 10.0

# A database host that vanished (powered off, partitioned away) sends no FIN or RST: without
# keepalives an idle pooled connection to it looks alive for hours (Linux waits about 2 h
# before the first probe), and the next request to draw it waits out its whole bound.
# asyncpg has no keepalive option, so the socket gets them here: probes after 30 s idle,
# every 5 s, 3 unanswered close it; TCP_USER_TIMEOUT bounds unacknowledged writes the same
# way (libpq's keepalives_idle / tcp_user_timeout). A peer that is there but silent (a
# stuck proxy or failover) still ACKs the probes: that is what the deadline below is for.
_KEEPALIVE_IDLE_S = 30
_KEEPALIVE_INTERVAL_S = 5
_KEEPALIVE_COUNT = 3
_USER_TIMEOUT_MS = (_KEEPALIVE_IDLE_S + _KEEPALIVE_INTERVAL_S * _KEEPALIVE_COUNT) * 1000

_encoder = msgspec.json.Encoder()


def _encode_json(value: object) -> str:
    return _encoder.encode(value).decode()


def set_keepalive(conn: asyncpg.Connection) -> None:
    """Turn TCP keepalives on for a connection's socket (a unix socket has no peer to lose)."""
    transport = getattr(conn, "_transport", None)  # asyncpg exposes no public accessor
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", _KEEPALIVE_IDLE_S),  # Linux; macOS calls it TCP_KEEPALIVE
        ("TCP_KEEPINTVL", _KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", _KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", _USER_TIMEOUT_MS),  # Linux only
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


async def init_connection(conn: asyncpg.Connection) -> None:
    set_keepalive(conn)
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(
            type_name, encoder=_encode_json, decoder=msgspec.json.decode, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (a round trip on every release).

    Nothing the service does outlives a transaction but asyncpg's own prepared statements:
    advisory locks are transaction-scoped, and there is no LISTEN, SET or cursor; asyncpg
    still rolls back a transaction left open.
    """


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]
    """An asyncpg pool that knows how long a unit of work may wait on its database."""

    __slots__ = ("timeout_s",)

    def __init__(self, *args: Any, timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_s = timeout_s


# asyncpg's default. Each cached statement is a named prepared statement on the server:
# parsed and planned once per connection, then a single Bind/Execute per call.
STATEMENT_CACHE_SIZE = 100


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    prepared_statements: bool = True,
) -> asyncpg.Pool:
    """``timeout_s`` bounds every wait: a request's database work (see `connection`), each
    statement and COMMIT, and opening a connection.

    ``prepared_statements`` False (H2S_DB_POOLER=transaction): no statement cache. A named
    prepared statement lives on the server connection it was made on, and a transaction
    pooler lends the next transaction another one ("prepared statement
    __asyncpg_stmt_1__ does not exist"). Without the cache asyncpg prepares each
    statement unnamed and parses it again in the same Sync as its Bind, which any server
    connection accepts, at one more round trip per statement (docs/scaling.md)."""
    connection_class: type[asyncpg.Connection] = asyncpg.Connection
    if tracing.enabled():
        # A span per database call; with tracing off the connections are asyncpg's own.
        from h2s_checkout.store.traced_connection import TracedConnection

        connection_class = TracedConnection
    # asyncpg.create_pool cannot make a subclass; these are the arguments it passes.
    pool = BoundedPool(
        dsn,
        timeout_s=timeout_s,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        # Connections are recycled so a restarted database is picked up without a restart here.
        max_inactive_connection_lifetime=60,
        init=init_connection,
        reset=_keep_session,
        loop=None,
        connection_class=connection_class,
        record_class=asyncpg.Record,
        # Backstops for work outside `connection` (its own deadline comes first inside it):
        # each statement, and connection establishment.
        command_timeout=timeout_s,
        timeout=timeout_s,
        statement_cache_size=STATEMENT_CACHE_SIZE if prepared_statements else 0,
    )
    await pool
    return pool


class DatabaseBudget:
    """The seconds a unit of work (one request) may still spend waiting on the database."""

    __slots__ = ("at_most_s", "remaining_s")

    def __init__(self, at_most_s: float | None) -> None:
        self.at_most_s = at_most_s
        self.remaining_s: float | None = None  # set from the pool's bound on first use

    def draw(self, pool_bound_s: float) -> float:
        if self.remaining_s is None:
            self.remaining_s = min(pool_bound_s, self.at_most_s or pool_bound_s)
        return self.remaining_s

    def spend(self, seconds: float) -> None:
        if self.remaining_s is not None:
            self.remaining_s -= seconds


_budget: contextvars.ContextVar[DatabaseBudget | None] = contextvars.ContextVar(
    "h2s_database_budget", default=None
)


@contextmanager
def database_budget(at_most_s: float | None = None) -> Iterator[DatabaseBudget]:
    """One bound for all the database work in this block: every `connection` inside draws
    on the same seconds (the pool's ``timeout_s``, or ``at_most_s`` if smaller).

    Only time inside `connection` blocks counts, so a Stripe call between two phases does
    not eat the database's share. Outside any budget each `connection` block gets the
    pool's whole bound for itself (background passes, commands).
    """
    budget = DatabaseBudget(at_most_s)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


class _Deadline:
    """Terminates a connection still in use when its bound runs out."""

    __slots__ = ("bound_s", "expired", "handle")

    def __init__(self, bound_s: float) -> None:
        self.bound_s = bound_s
        self.expired = False
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, loop: asyncio.AbstractEventLoop, at: float, conn: asyncpg.Connection) -> None:
        self.handle = loop.call_at(at, self._expire, conn)

    def disarm(self) -> None:
        if self.handle is not None:
            self.handle.cancel()

    def _expire(self, conn: asyncpg.Connection) -> None:
        # Terminate, not cancel: cancelling a query makes asyncpg send a CancelRequest over
        # a new connection and wait for it, which a silent network never answers. Closing
        # the socket wakes the waiting statement at once; the server rolls back whatever
        # transaction was open when it sees the connection gone, and the pool opens a new
        # connection in this one's place. A COMMIT cut off here either happened whole or
        # not at all: never half.
        self.expired = True
        log.warning("database.deadline_exceeded", bound_s=round(self.bound_s, 3))
        conn.terminate()


def bound_s(pool: asyncpg.Pool) -> float:
    """The pool's bound on any database wait (H2S_DB_TIMEOUT_S)."""
    return float(getattr(pool, "timeout_s", DEFAULT_TIMEOUT_S))


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, with acquiring it and everything done on it (statements,
    COMMIT) bounded by the pool's ``timeout_s`` or what is left of the current
    `database_budget`. A database that cannot be reached, or does not answer in time,
    becomes DatabaseUnavailable (503); the connection is then closed, never reused."""
    bound = bound_s(pool)
    budget = _budget.get()
    limit_s = budget.draw(bound) if budget is not None else bound
    if limit_s <= 0:
        raise DatabaseUnavailable("database unavailable: this request's database time is spent")
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = _Deadline(limit_s)
    try:
        # The acquire timeout covers opening a new connection too; release inherits it.
        async with pool.acquire(timeout=limit_s) as conn:
            deadline.arm(loop, started + limit_s, conn)
            try:
                yield conn
            finally:
                deadline.disarm()
    except UNAVAILABLE_ERRORS as exc:
        if deadline.expired or isinstance(exc, asyncio.TimeoutError):
            message = f"database unavailable: no answer within {limit_s:.1f} s"
        else:
            message = f"database unavailable: {type(exc).__name__}"
        raise DatabaseUnavailable(message) from exc
    finally:
        if budget is not None:
            budget.spend(loop.time() - started)
