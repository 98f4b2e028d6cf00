"""Trace rows: the transition writer the state machine calls, buffered steps, the timeline."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from h2s_checkout.domain.errors import IllegalTransition
from h2s_checkout.metrics import TRANSITIONS


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Step:
    event: str
    at: datetime
    duration_ms: float | None
    detail: dict[str, Any]

    @classmethod
    def now(cls, event: str, duration_ms: float | None = None, **detail: Any) -> Step:
        return cls(event, utcnow(), duration_ms, detail)


_WRITE_TRANSITION = """
with moved as (
    update h2s_checkouts
    set state = $3, updated_at = $5
    where checkout_id = $1 and state = $2
    returning checkout_id
), steps as (
    insert into h2s_checkout_traces (checkout_id, kind, event, at, duration_ms, detail)
    select m.checkout_id, 'step', s.event, s.at, s.duration_ms, coalesce(s.detail, '{}')
    from moved m,
         jsonb_to_recordset($7::jsonb) as s(event text, at timestamptz, duration_ms float8,
                                             detail jsonb)
    returning seq
)
insert into h2s_checkout_traces (checkout_id, kind, event, from_state, to_state, at, detail)
select checkout_id, 'transition', $4, $2, $3, $5, $6 from moved
returning seq
"""

_WRITE_STEPS = """
insert into h2s_checkout_traces (checkout_id, kind, event, at, duration_ms, detail)
select $1, 'step', s.event, s.at, s.duration_ms, coalesce(s.detail, '{}')
from jsonb_to_recordset($2::jsonb) as s(event text, at timestamptz, duration_ms float8,
                                         detail jsonb)
"""


@dataclass
class TraceWriter:
    """Listener of a CheckoutMachine: writes each transition with its trace row.

    It runs on the caller's connection, so the state change and its trace row commit or
    roll back together with the rest of the phase. Steps recorded with ``step`` are kept
    until the next transition (or ``flush``) and written in the same statement.
    """

    conn: asyncpg.Connection
    checkout_id: uuid.UUID
    pending: list[Step] = field(default_factory=list)

    def step(self, event: str, duration_ms: float | None = None, **detail: Any) -> None:
        self.pending.append(Step(event, utcnow(), duration_ms, detail))

    def timed(self, event: str) -> _TimedStep:
        return _TimedStep(self, event)

    def _pending_json(self) -> list[dict[str, Any]]:
        steps = [
            {
                "event": s.event,
                "at": s.at.isoformat(),
                "duration_ms": s.duration_ms,
                "detail": s.detail,
            }
            for s in self.pending
        ]
        self.pending = []
        return steps

    async def after_transition(self, event: Any, source: Any, target: Any, **kwargs: Any) -> None:
        detail = kwargs.get("detail") or {}
        row = await self.conn.fetchrow(
            _WRITE_TRANSITION,
            self.checkout_id,
            source.id,
            target.id,
            str(getattr(event, "id", event)),
            utcnow(),
            detail,
            self._pending_json(),
        )
        if row is None:
            # Another process moved this checkout since we read it: refuse rather than fork
            # its history. The caller's transaction rolls back.
            raise IllegalTransition(
                f"checkout {self.checkout_id} is no longer in state {source.id}",
                checkout_id=str(self.checkout_id),
            )
        self._written(target)

    @staticmethod
    def _written(target: Any) -> None:
        """Count a transition once its statement succeeded (h2s_checkout_transitions_total)."""
        TRANSITIONS.labels(target.id).inc()

    async def flush(self) -> None:
        if self.pending:
            await self.conn.execute(_WRITE_STEPS, self.checkout_id, self._pending_json())


class _TimedStep:
    """``with writer.timed("order.created") as detail:`` records the step's duration."""

    def __init__(self, writer: TraceWriter, event: str) -> None:
        self.writer = writer
        self.event = event
        self.detail: dict[str, Any] = {}

    def __enter__(self) -> dict[str, Any]:
        self.started = time.perf_counter()
        return self.detail

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            elapsed = (time.perf_counter() - self.started) * 1000
            self.writer.step(self.event, round(elapsed, 3), **self.detail)


async def record_steps(conn: asyncpg.Connection, checkout_id: uuid.UUID, steps: list[Step]) -> None:
    """Write steps outside a transition (a replay, a conflict)."""
    writer = TraceWriter(conn, checkout_id, list(steps))
    await writer.flush()


_TIMELINE = """
select seq, kind, event, from_state, to_state, at, duration_ms, detail,
       extract(epoch from at - lag(at) over (order by at, seq)) * 1000 as since_previous_ms
from h2s_checkout_traces
where checkout_id = $1
order by at, seq
"""


async def timeline(conn: asyncpg.Connection, checkout_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(_TIMELINE, checkout_id)
