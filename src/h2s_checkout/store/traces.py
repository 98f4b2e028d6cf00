"""Trace rows: steps and transitions, written in the order they happened; the timeline.

Rows go through the server-side function ``h2s_write_trace_rows`` (its migration says
why: one INSERT in array order gives seq in that order), alone or inside the statement
that changes the checkout's state. In a sampled span the statement also sets the span's
traceparent (``h2s_in_trace``, *_otel_trace_context.sql), and each row takes its trace id
in ``otel_trace_id``: the timeline's link to the OpenTelemetry trace.

Every row made here while someone is acting (a key's request, a reconciler pass, a
webhook event: ``h2s_checkout.observability.logging.bind_actor``/``acting_as``) carries
``detail.actor``, unless its detail names an actor itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from h2s_checkout.domain.errors import IllegalTransition
from h2s_checkout.observability import tracing
from h2s_checkout.observability.logging import current_actor
from h2s_checkout.observability.metrics import TRANSITIONS


def utcnow() -> datetime:
    return datetime.now(UTC)


def _with_actor(detail: dict[str, Any]) -> dict[str, Any]:
    actor = current_actor()
    if actor is None or "actor" in detail:
        return detail
    return {**detail, "actor": actor}


@dataclass(slots=True)
class Step:
    event: str
    at: datetime
    duration_ms: float | None
    detail: dict[str, Any]

    @classmethod
    def now(cls, event: str, duration_ms: float | None = None, **detail: Any) -> Step:
        return cls(event, utcnow(), duration_ms, detail)

    def row(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "at": self.at.isoformat(),
            "duration_ms": self.duration_ms,
            "detail": _with_actor(self.detail),
        }


def transition_row(
    event: str, source: str, target: str, at: datetime, detail: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "kind": "transition",
        "event": event,
        "from_state": source,
        "to_state": target,
        "at": at.isoformat(),
        "detail": _with_actor(detail or {}),
    }


def count_transition(target: str) -> None:
    """h2s_checkout_transitions_total, once the statement that wrote it succeeded."""
    TRANSITIONS.labels(target).inc()


# The state change guarded by the state it leaves, and its trace rows, in one statement.
_MOVE = """
with moved as (
    update h2s_checkouts set state = $3, updated_at = $4
    where checkout_id = $1 and state = $2
    returning checkout_id
)
select h2s_write_trace_rows(checkout_id, $5::jsonb) from moved
"""
_MOVE_TRACED = """
with moved as (
    update h2s_checkouts set state = $3, updated_at = $4
    where checkout_id = $1 and state = $2
    returning checkout_id
)
select h2s_write_trace_rows(checkout_id, h2s_in_trace($6, $5::jsonb)) from moved
"""

_WRITE_ROWS = "select h2s_write_trace_rows($1, $2::jsonb)"
_WRITE_ROWS_TRACED = "select h2s_write_trace_rows($1, h2s_in_trace($3, $2::jsonb))"


async def write_transition(
    conn: asyncpg.Connection,
    checkout_id: uuid.UUID,
    event: str,
    source: str,
    target: str,
    *,
    steps: list[Step] | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Persist a transition the state machine decided, with the steps that led to it.

    The ``state = source`` guard refuses a decision made on a stale state (another process
    moved the checkout since it was read): IllegalTransition, and the caller's transaction
    rolls back rather than fork the checkout's history.
    """
    at = utcnow()
    rows = [s.row() for s in steps or ()]
    rows.append(transition_row(event, source, target, at, detail))
    traceparent = tracing.traceparent()
    if traceparent is None:
        written = await conn.fetchval(_MOVE, checkout_id, source, target, at, rows)
    else:
        written = await conn.fetchval(
            _MOVE_TRACED, checkout_id, source, target, at, rows, traceparent
        )
    if written is None:
        raise IllegalTransition(
            f"checkout {checkout_id} is no longer in state {source}",
            checkout_id=str(checkout_id),
        )
    count_transition(target)


async def record_steps(conn: asyncpg.Connection, checkout_id: uuid.UUID, steps: list[Step]) -> None:
    """Write steps outside a transition (a settlement attempt, an ignored outcome)."""
    if not steps:
        return
    rows = [s.row() for s in steps]
    traceparent = tracing.traceparent()
    if traceparent is None:
        await conn.execute(_WRITE_ROWS, checkout_id, rows)
    else:
        await conn.execute(_WRITE_ROWS_TRACED, checkout_id, rows, traceparent)


# seq is the order in which the steps happened (h2s_write_trace_rows); the time since the
# previous row follows it.
_TIMELINE = """
select seq, kind, event, from_state, to_state, at, duration_ms, detail, otel_trace_id,
       extract(epoch from at - lag(at) over (order by seq)) * 1000 as since_previous_ms
from h2s_checkout_traces
where checkout_id = $1
order by seq
"""


async def timeline(conn: asyncpg.Connection, checkout_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(_TIMELINE, checkout_id)
