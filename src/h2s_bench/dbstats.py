"""Database round trips per checkout, counted by pg_stat_statements (calls deltas)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import asyncpg

# toplevel (PostgreSQL 14+): false for statements run inside another one, such as the
# foreign-key checks of an insert, which cost no round trip.
_SNAPSHOT = """
select queryid, toplevel, query, calls
from pg_stat_statements
where dbid = (select oid from pg_database where datname = current_database())
  and query not ilike '%pg_stat_statements%'
"""

# A foreign-key check PostgreSQL runs itself (a deferred one runs at COMMIT and is then
# marked top-level): no round trip.
_FK_CHECK = re.compile(r'^select .* from only "[^"]+"\."[^"]+" x where .* for (key )?share of x$')

# asyncpg's Connection.reset() when a connection goes back to the pool: one simple-query
# message (one round trip) that pg_stat_statements sees as up to four statements.
POOL_RESET_FIRST = "select pg_advisory_unlock_all()"
POOL_RESET_REST = ("close all", "unlisten *", "reset all")

# What asyncpg sends when a pool opens a connection and the JSON codecs are registered: its
# type introspection, run with JIT off and the setting put back. Once per connection (the
# pool replaces one after 50,000 queries or a minute idle), not once per checkout: in a
# count over a few hundred checkouts one opening would weigh 0.01 per statement.
CONNECTION_SETUP = (
    re.compile(r"^with recursive typeinfo_tree\("),
    re.compile(r"^select current_setting\(\$1\) as cur, set_config\(\$2, \$3, \$4\) as new$"),
    re.compile(r"^select set_config\(\$2, \$1, \$3\)$"),
)


def _opens_a_connection(query: str) -> bool:
    return any(pattern.match(query) for pattern in CONNECTION_SETUP)


async def ensure_extension(dsn: str) -> str | None:
    """Create pg_stat_statements in the bench database; the reason it cannot, or None."""
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"cannot connect: {exc}"
    try:
        await conn.execute("create extension if not exists pg_stat_statements")
        await conn.fetch(_SNAPSHOT)
    except asyncpg.PostgresError as exc:
        return f"pg_stat_statements unavailable: {exc}"
    finally:
        await conn.close()
    return None


Snapshot = dict[tuple[int, bool], tuple[str, int]]


async def snapshot(dsn: str) -> Snapshot:
    """(queryid, toplevel) -> (query, calls) for the bench database."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(_SNAPSHOT)
    finally:
        await conn.close()
    return {
        (int(r["queryid"]), bool(r["toplevel"])): (str(r["query"]), int(r["calls"])) for r in rows
    }


def _norm(query: str) -> str:
    return " ".join(query.lower().rstrip(";").split())


@dataclass
class RoundTrips:
    checkouts: int
    by_statement: list[tuple[str, float]] = field(default_factory=list)  # (query, per checkout)
    nested: list[tuple[str, float]] = field(default_factory=list)  # run inside a statement

    @property
    def nested_calls(self) -> float:
        """Statements the server runs itself (foreign-key checks): no round trip."""
        return sum(c for _q, c in self.nested)

    def _sum(self, pred: str | tuple[str, ...]) -> float:
        wanted = (pred,) if isinstance(pred, str) else pred
        return sum(c for q, c in self.by_statement if _norm(q) in wanted)

    @property
    def statements(self) -> float:
        """Sum of pg_stat_statements calls per checkout (the brief's figure)."""
        return sum(c for _q, c in self.by_statement)

    @property
    def begins(self) -> float:
        return self._sum("begin")

    @property
    def commits(self) -> float:
        return self._sum("commit")

    @property
    def pool_resets(self) -> float:
        return self._sum(POOL_RESET_FIRST)

    @property
    def connection_setup(self) -> float:
        """Statements of connections opened during the count (asyncpg's introspection)."""
        return sum(c for q, c in self.by_statement if _opens_a_connection(_norm(q)))

    @property
    def round_trips(self) -> float:
        """Statements, less the extra statements inside asyncpg's one-message pool reset and
        those of connections opened meanwhile."""
        return self.statements - self._sum(POOL_RESET_REST) - self.connection_setup


def delta(before: Snapshot, after: Snapshot, checkouts: int) -> RoundTrips:
    top: list[tuple[str, float]] = []
    nested: list[tuple[str, float]] = []
    for key, (query, calls) in after.items():
        diff = calls - before.get(key, ("", 0))[1]
        if diff > 0:
            inside = not key[1] or bool(_FK_CHECK.match(_norm(query)))
            (nested if inside else top).append((query, diff / max(checkouts, 1)))
    top.sort(key=lambda r: -r[1])
    nested.sort(key=lambda r: -r[1])
    return RoundTrips(checkouts, top, nested)


async def count_orders(dsn: str, email_like: str) -> tuple[int, int]:
    """(orders, distinct checkouts with an order) whose customer email matches ``email_like``."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "select count(*) as orders, count(distinct checkout_id) as checkouts "
            "from h2s_orders where customer->>'email' like $1",
            email_like,
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["orders"]), int(row["checkouts"])


async def server_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("show server_version"))
    finally:
        await conn.close()


async def count_trace_steps(dsn: str, email_like: str, event: str) -> int:
    """How many ``event`` trace steps the checkouts of matching customers recorded."""
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetchval(
            "select count(*) from h2s_checkout_traces t "
            "join h2s_orders o on o.checkout_id = t.checkout_id "
            "where o.customer->>'email' like $1 and t.event = $2",
            email_like,
            event,
        )
    finally:
        await conn.close()
    return int(found or 0)
