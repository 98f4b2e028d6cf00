"""Replays that arrive together share one round trip (a group commit for replays).

A worker that expects a replay (its recent keys) starts a call at once when no other
replay call of this worker is on its way. While one is, the requests that arrive wait and
go together in the next call, up to ``max_batch`` of them, sent by the same task as soon
as the call before is answered: under load, one statement, one transaction and one
commit serve many replays, and the worker sends and reads one message for them all;
alone, a replay goes as soon as it comes, as before.

What is decided does not change: PostgreSQL decides each element as it decides a single
call (``h2s_replay_checkouts`` looks up and decides as ``h2s_begin_checkout`` does), and a
request is answered only after the call with its trace row has committed. A call that
fails fails every request in it, each with its own DatabaseUnavailable (503) when the
database could not be reached. A request waits for its answer, the call ahead of its own
included, no longer than the pool's bound on any database wait (H2S_DB_TIMEOUT_S).

With tracing on a call is a span (``checkout replay_batch``) linked to each request's
span; a call for one request (or for requests of one trace) is a child of its span, and
its trace rows take that trace's id. The trace rows of a call for requests of several
traces carry none: one statement has one setting (*_otel_trace_context.sql).
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass

import asyncpg

from h2s_checkout.domain.errors import DatabaseUnavailable
from h2s_checkout.observability import tracing
from h2s_checkout.observability.metrics import REPLAY_BATCH_SIZE
from h2s_checkout.store import checkouts
from h2s_checkout.store.pool import bound_s, connection

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_IN_FLIGHT = 1


@dataclass(slots=True)
class _Waiting:
    call: checkouts.ReplayCall
    answer: asyncio.Future[asyncpg.Record]
    # The request's OpenTelemetry context (None with tracing off) and its traceparent.
    context: object = None
    traceparent: str | None = None


class ReplayBatcher:
    """Coalesces this worker's replay calls: at most ``max_in_flight`` on their way at once,
    each carrying up to ``max_batch`` requests."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._waiting: list[_Waiting] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def replay(self, call: checkouts.ReplayCall) -> asyncpg.Record:
        """The row ``begin_checkout`` expecting a replay would answer for ``call``."""
        answer: asyncio.Future[asyncpg.Record] = asyncio.get_running_loop().create_future()
        self._waiting.append(
            _Waiting(call, answer, tracing.current_context(), tracing.traceparent())
        )
        if len(self._in_flight) < self._max_in_flight:
            self._start_pump()
        # Waiting for a call ahead counts against the same bound as a call of one's own.
        bound = bound_s(self._pool)
        try:
            async with asyncio.timeout(bound):
                return await answer
        except TimeoutError:
            raise DatabaseUnavailable(
                f"database unavailable: no answer within {bound:.1f} s"
            ) from None

    def _start_pump(self) -> None:
        # A context of its own: the calls are every request's, not the one that started
        # them (its log binding and its database budget stay with it).
        task = asyncio.get_running_loop().create_task(self._pump(), context=contextvars.Context())
        self._in_flight.add(task)

    async def _pump(self) -> None:
        # The next call leaves as soon as the last one is answered, in the same step: no
        # new task and no done-callback, each a pass of the event loop behind every
        # request it has ready, between two calls.
        try:
            while True:
                # A request that stopped waiting (its client went away, or its bound ran
                # out) is left out.
                waiting = [w for w in self._waiting if not w.answer.done()]
                batch, self._waiting = waiting[: self._max_batch], waiting[self._max_batch :]
                if not batch:
                    return
                await self._send(batch)
        finally:
            # In the step that ends the pump, so a request arriving after it starts another.
            self._in_flight.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _send(self, batch: list[_Waiting]) -> None:
        traces = {w.traceparent.split("-")[1] if w.traceparent else None for w in batch}
        one_trace = batch[0] if len(traces) == 1 else None
        try:
            with tracing.span(
                "checkout replay_batch",
                parent=None if one_trace is None else one_trace.context,
                links=[w.context for w in batch if w.context is not None],
                attributes={"h2s.replay_batch.size": len(batch)},
            ):
                async with connection(self._pool) as conn:
                    rows = await checkouts.replay_checkouts(
                        conn,
                        [w.call for w in batch],
                        traceparent=None if one_trace is None else one_trace.traceparent,
                    )
        except DatabaseUnavailable as exc:
            for w in batch:
                if not w.answer.done():
                    fresh = DatabaseUnavailable(str(exc))
                    fresh.__cause__ = exc.__cause__
                    w.answer.set_exception(fresh)
            return
        except asyncio.CancelledError:  # the worker is stopping
            for w in batch:
                w.answer.cancel()
            raise
        except Exception as exc:
            for w in batch:
                if not w.answer.done():
                    w.answer.set_exception(exc)
            return
        REPLAY_BATCH_SIZE.observe(len(batch))
        for w, row in zip(batch, rows, strict=True):
            if not w.answer.done():
                w.answer.set_result(row)
