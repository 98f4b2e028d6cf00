"""With tracing on, the pool's connections: a client span for each database call.

A span is named by the server-side function a statement calls (``h2s_begin_checkout``),
else by its operation and table (``SELECT h2s_checkouts``), and never carries the
statement's arguments. Imported only once tracing is on (store/pool.py).
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from h2s_checkout.observability import tracing

# A function called by a statement: `select * from h2s_f(`, `select h2s_f(`; not an insert's
# column list (`into h2s_table (`). h2s_in_trace only carries the trace: not the call.
_FUNCTION = re.compile(r"(?:\bselect\s+(?:\*\s+from\s+)?|\bfrom\s+)(h2s_\w+)\s*\(", re.I)
_TABLE = re.compile(r"\b(?:from|into|update|join)\s+(\w+)", re.I)
_summaries: dict[str, tuple[str, dict[str, str]]] = {}


def summary(query: str) -> tuple[str, dict[str, str]]:
    """The span's name (the semantic conventions' query summary) and attributes for a
    statement, kept per statement text: the service's statements are constants. As few
    attributes as say it: each costs the SDK a few microseconds per span."""
    found = _summaries.get(query)
    if found is not None:
        return found
    words = query.split(None, 1)
    operation = words[0].rstrip(";").upper() if words else ""
    attributes = {"db.system.name": "postgresql", "db.operation.name": operation}
    function = next(
        (name for name in _FUNCTION.findall(query) if name.lower() != "h2s_in_trace"), None
    )
    if function is not None:
        attributes["db.stored_procedure.name"] = function
        name = function
    else:
        table = _TABLE.search(query)
        if table is not None:
            attributes["db.collection.name"] = table.group(1)
        name = f"{operation} {table.group(1)}" if table is not None else operation
    found = (name, attributes)
    if len(_summaries) < 10_000:  # a bound, should anything build statements at run time
        _summaries[query] = found
    return found


def _span(query: str) -> tracing.SpanHandle:
    name, attributes = summary(query)
    return tracing.span(name, kind="client", attributes=attributes)


class TracedConnection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg's connection with a span around each statement it is asked to run."""

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with _span(query):
            return await super().execute(query, *args, **kwargs)

    async def executemany(self, command: str, args: Any, **kwargs: Any) -> Any:
        with _span(command):
            return await super().executemany(command, args, **kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with _span(query):
            return await super().fetch(query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with _span(query):
            return await super().fetchrow(query, *args, **kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with _span(query):
            return await super().fetchval(query, *args, **kwargs)
