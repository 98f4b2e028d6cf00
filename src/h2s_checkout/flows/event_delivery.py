"""Deliver the outbox: sign each event by Standard Webhooks and POST it to its endpoint,
at least once, off the request path, in every replica without two sending one attempt.

A delivery is leased with ``FOR UPDATE SKIP LOCKED`` (store/outbox.py); the loop is woken
by ``NOTIFY h2s_events`` (sent by ``h2s_enqueue_order_event`` when there is something to
deliver) on a connection of its own, outside the pool, and polls as a fallback. LISTEN
is session state: behind a transaction pooler it needs a direct connection
(H2S_DATABASE_DIRECT_URL), and without one the loop only polls. Its statements go
through a pool of its own (two connections), so deliveries never wait for, nor hold, a
connection a checkout needs.

With tracing on each attempt is a client span (``events.deliver <type>``), a child of the
span that wrote the event (``h2s_events.traceparent``), and the POST carries its
``traceparent``: the subscriber's handling joins the trace of the change it is told of.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from h2s_checkout.domain.errors import CheckoutError, InvalidRequest
from h2s_checkout.domain.events import (
    RESPONSE_BODY_KEPT,
    Address,
    ReservedTargets,
    address_refusal,
    check_url,
    host_address,
    retry_delay,
    signature_header,
)
from h2s_checkout.observability import tracing
from h2s_checkout.observability.logging import get_logger
from h2s_checkout.observability.metrics import EVENT_DELIVERIES, EVENT_DELIVERY_LAG
from h2s_checkout.store import outbox
from h2s_checkout.store.pool import UNAVAILABLE_ERRORS, connection, create_pool
from h2s_checkout.store.traces import utcnow

log = get_logger(__name__)

_encoder = msgspec.json.Encoder()
_DB_ERRORS: tuple[type[BaseException], ...] = (
    CheckoutError,
    asyncpg.PostgresError,
    *UNAVAILABLE_ERRORS,
)
USER_AGENT = "h2s-checkout-events/1"
_GONE_REASON = "the endpoint answered 410 Gone"


@dataclass(frozen=True)
class DeliverySettings:
    timeout: timedelta = timedelta(seconds=15)
    poll_interval: timedelta = timedelta(seconds=1)
    max_in_flight: int = 32
    allow_private: bool = False
    # This service's and its payment provider's addresses: never sent to.
    reserved: ReservedTargets = field(default_factory=ReservedTargets)

    @property
    def lease(self) -> timedelta:
        """Long enough for an attempt to time out and its result to be written."""
        return self.timeout + timedelta(seconds=5)


# How long what a reserved target's name resolves to is trusted.
_RESERVED_NAMES_TTL_S = 60.0


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then keeps only addresses a subscriber may use: a name that
    resolves to a metadata or (unless allowed) private address, or to this service or its
    payment provider, is never connected to, whatever it resolved to when the endpoint
    was registered.

    A host that is an IP literal in any form (``127.1``, ``2130706433``) is read by our
    own parser and connected to as read, not handed to getaddrinfo: what is judged is
    what is dialled, whichever forms this aiohttp version takes for literals itself.
    """

    def __init__(self, *, allow_private: bool, reserved: ReservedTargets | None = None) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private
        self._reserved = reserved or ReservedTargets()
        self._reserved_named: dict[tuple[Address, int], str] = {}
        self._reserved_named_at = -_RESERVED_NAMES_TTL_S

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = host_address(host)
        if literal is not None:
            if await self._refusal(host, literal, port) is not None:
                raise OSError(f"{host} is an address events may not be sent to")
            literal_family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [
                ResolveResult(
                    hostname=host,
                    host=str(literal),
                    port=port,
                    family=literal_family,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]
        results = await self._inner.resolve(host, port, family)
        allowed = [
            r
            for r in results
            if await self._refusal(host, ipaddress.ip_address(r["host"].split("%", 1)[0]), port)
            is None
        ]
        if not allowed:
            raise OSError(f"{host} resolves only to addresses events may not be sent to")
        return allowed

    async def _refusal(self, host: str, address: Address, port: int) -> str | None:
        refusal = self._reserved.refusal(host, address, port)
        if refusal is None:
            refusal = address_refusal(address, allow_private=self._allow_private)
        if refusal is None and self._reserved.named_hosts():
            named = await self._reserved_addresses()
            refusal = named.get((address, port))
        return refusal

    async def _reserved_addresses(self) -> dict[tuple[Address, int], str]:
        """What the reserved targets' names resolve to now (this service behind its
        public name): a subscriber's name or address that lands there is refused too."""
        if time.monotonic() - self._reserved_named_at < _RESERVED_NAMES_TTL_S:
            return self._reserved_named
        found: dict[tuple[Address, int], str] = {}
        for target in self._reserved.targets:
            if target.host not in self._reserved.named_hosts():
                continue
            try:
                answers = await self._inner.resolve(target.host, target.port, socket.AF_UNSPEC)
            except OSError:
                continue  # not resolvable from here: nothing to compare with
            for answer in answers:
                address = ipaddress.ip_address(answer["host"].split("%", 1)[0])
                found[(address, target.port)] = target.what
        self._reserved_named, self._reserved_named_at = found, time.monotonic()
        return found

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status_code: int | None
    error: str | None
    response_body: str | None
    duration_ms: float

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def signing_secrets(delivery: asyncpg.Record | dict[str, Any], now: datetime) -> list[str]:
    """The endpoint's secret, and the previous one while a rotation's overlap lasts."""
    previous, until = delivery["previous_secret"], delivery["previous_secret_until"]
    return [delivery["secret"], *([previous] if previous and until and until > now else [])]


async def _read_start(response: aiohttp.ClientResponse) -> str:
    kept = b""
    while len(kept) < RESPONSE_BODY_KEPT:
        part = await response.content.read(RESPONSE_BODY_KEPT - len(kept))
        if not part:
            break
        kept += part
    return kept.decode("utf-8", "replace").replace("\x00", "\ufffd")


class EventDeliverer:
    def __init__(
        self,
        dsn: str,
        settings: DeliverySettings | None = None,
        clock: Callable[[], datetime] = utcnow,
        *,
        listen_dsn: str | None,
        prepared_statements: bool = True,
    ) -> None:
        """``listen_dsn``: where LISTEN lasts (PostgreSQL itself, not a transaction
        pooler); None: the loop polls only."""
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._dsn = dsn
        self._listen_dsn = listen_dsn
        self._prepared_statements = prepared_statements
        self._settings = settings or DeliverySettings()
        self._clock = clock
        self._http: aiohttp.ClientSession | None = None
        self._in_flight: set[asyncio.Task[str]] = set()
        self._wake = asyncio.Event()

    @property
    def clock(self) -> Callable[[], datetime]:
        """The time deliveries are scheduled and a rotation's overlap is judged by."""
        return self._clock

    # -- one pass (the command, tests) ----------------------------------------------------

    async def run_once(self) -> Counter[str]:
        """Send every delivery due now, up to ``max_in_flight``, and wait for the answers."""
        leased = await self._lease(self._settings.max_in_flight)
        outcomes = await asyncio.gather(*(self._deliver(d) for d in leased))
        return Counter(outcomes)

    # -- in the background, for as long as the context is open ---------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(self._loop(), name="h2s-events-deliver")]
        if self._listen_dsn is not None:
            tasks.append(
                asyncio.create_task(self._listen(self._listen_dsn), name="h2s-events-listen")
            )
        else:
            log.warning(
                "events.polling_only",
                poll_s=self._settings.poll_interval.total_seconds(),
                reason="DATABASE_URL leads to a transaction pooler (H2S_DB_POOLER), where "
                "LISTEN is lost: set H2S_DATABASE_DIRECT_URL to the server itself to be "
                "woken by NOTIFY; until then events leave on the poll",
            )
        try:
            yield
        finally:
            # An attempt cut short here is sent again when its lease ends (at least once).
            stopping = [*tasks, *self._in_flight]
            for task in stopping:
                task.cancel()
            # gather, not `suppress(CancelledError)` around each await: that would also
            # swallow a cancel of the task running this shutdown.
            await asyncio.gather(*stopping, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _own_pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=2,
                    prepared_statements=self._prepared_statements,
                )
            return self._pool

    async def _loop(self) -> None:
        while True:
            self._wake.clear()  # before the lease: a NOTIFY during it wakes the next wait
            free = self._settings.max_in_flight - len(self._in_flight)
            if free > 0:
                leased = await self._lease(free)
                for delivery in leased:
                    self._spawn(delivery)
                if leased and len(leased) == free:
                    continue  # there may be more due
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # lands in the tick its inner wait finishes (a NOTIFY just as the app stops),
            # and this loop would then outlive its context and hang the shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.poll_interval.total_seconds()):
                    await self._wake.wait()

    def _spawn(self, delivery: asyncpg.Record) -> None:
        task = asyncio.create_task(self._deliver(delivery))
        self._in_flight.add(task)

        def done(finished: asyncio.Task[str]) -> None:
            full = len(self._in_flight) >= self._settings.max_in_flight
            self._in_flight.discard(finished)
            if full:
                self._wake.set()  # a slot is free for what is still due

        task.add_done_callback(done)

    async def _listen(self, dsn: str) -> None:
        """LISTEN on a connection of its own (the pool keeps no session state); reconnect
        when it drops, and look for due work after each (re)connection."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(outbox.NOTIFY_CHANNEL, lambda *_a: self._wake.set())
                self._wake.set()
                await lost.wait()
                log.warning("events.listener_lost")
            except (asyncpg.PostgresError, *UNAVAILABLE_ERRORS) as exc:
                log.warning("events.listener_failed", error=type(exc).__name__)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(max(2.0, self._settings.poll_interval.total_seconds()))

    # -- one delivery ---------------------------------------------------------------------

    async def _lease(self, limit: int) -> list[asyncpg.Record]:
        now = self._clock()
        try:
            async with connection(await self._own_pool()) as conn:
                return await outbox.lease_due(
                    conn, now=now, until=now + self._settings.lease, limit=limit
                )
        except _DB_ERRORS as exc:
            log.warning("events.lease_failed", error=type(exc).__name__)
            return []

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=GuardedResolver(
                        allow_private=self._settings.allow_private,
                        reserved=self._settings.reserved,
                    ),
                    limit=self._settings.max_in_flight,
                ),
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout.total_seconds()),
                headers={"user-agent": USER_AGENT},
            )
        return self._http

    async def send(self, delivery: asyncpg.Record | dict[str, Any]) -> AttemptResult:
        """POST the event once, signed; what came back (never raises for the network)."""
        body = _encoder.encode(delivery["body"])
        timestamp = int(time.time())  # the receiver compares it with its own clock
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery["event_id"],
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                signing_secrets(delivery, self._clock()), delivery["event_id"], timestamp, body
            ),
        }
        traceparent = tracing.traceparent()
        if traceparent is not None:
            headers["traceparent"] = traceparent
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        kept: str | None = None
        try:
            # An IP literal is never resolved, so it is judged here again.
            check_url(
                delivery["url"],
                allow_private=self._settings.allow_private,
                reserved=self._settings.reserved,
            )
            async with self._session().post(
                delivery["url"], data=body, headers=headers, allow_redirects=False
            ) as response:
                status_code = response.status
                kept = await _read_start(response)
        except InvalidRequest as exc:
            error = exc.message
        except TimeoutError:
            error = f"no answer within {self._settings.timeout.total_seconds():g} s"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        return AttemptResult(
            status_code, error, kept, round((time.perf_counter() - started) * 1000, 3)
        )

    async def _clear_to_send(self, delivery: asyncpg.Record) -> bool | None:
        """Whether the endpoint still takes it and the lease is still this attempt's;
        None when the database could not say (then it is not sent now either)."""
        try:
            async with connection(await self._own_pool()) as conn:
                return await outbox.clear_to_send(
                    conn, delivery["delivery_id"], delivery["attempts"]
                )
        except _DB_ERRORS as exc:
            log.warning(
                "events.check_failed", delivery_id=delivery["delivery_id"], error=type(exc).__name__
            )
            return None

    async def _deliver(self, delivery: asyncpg.Record) -> str:
        with tracing.span(
            f"events.deliver {delivery['type']}",
            kind="client",
            parent=delivery.get("traceparent"),
            attributes={
                "h2s.event_id": delivery["event_id"],
                "h2s.event.type": delivery["type"],
                "h2s.event.endpoint_id": delivery["endpoint_id"],
                "h2s.event.delivery_id": delivery["delivery_id"],
                "h2s.event.attempt": delivery["attempts"],
            },
        ) as span:
            outcome, status_code = await self._attempt(delivery)
            span.set({"h2s.event.outcome": outcome, "http.response.status_code": status_code})
            return outcome

    async def _attempt(self, delivery: asyncpg.Record) -> tuple[str, int | None]:
        """One attempt sent and recorded: its outcome and the answer's status."""
        # Leased before a 410 or a disable may have ended its endpoint: checked again right
        # before it leaves. Not sent: nothing to record; a cancelled delivery stays so, and
        # one the check could not judge is sent when its lease ends.
        cleared = await self._clear_to_send(delivery)
        if not cleared:
            outcome = "not_sent" if cleared is False else "unchecked"
            EVENT_DELIVERIES.labels(outcome).inc()
            log.info(
                "events.not_sent",
                delivery_id=delivery["delivery_id"],
                endpoint_id=delivery["endpoint_id"],
                attempt=delivery["attempts"],
                outcome=outcome,
            )
            return outcome, None
        started_at = self._clock()
        result = await self.send(delivery)
        next_at: datetime | None = None
        gone = result.status_code == 410
        if result.delivered:
            outcome, status = "delivered", "delivered"
        elif gone:
            outcome, status = "endpoint_gone", "failed"
        else:
            delay = retry_delay(delivery["tries"], random.random())
            if delay is None:
                outcome, status = "failed", "failed"
            else:
                outcome, status = "retrying", "pending"
                next_at = self._clock() + delay
        try:
            async with connection(await self._own_pool()) as conn:
                if gone:
                    # The endpoint's row before any delivery's, as every other holder of
                    # both takes them (store/outbox.py): no deadlock can roll this back.
                    async with conn.transaction():
                        await outbox.mark_endpoint_ended(
                            conn,
                            delivery["endpoint_id"],
                            status="disabled",
                            reason=_GONE_REASON,
                        )
                        await self._record(conn, delivery, started_at, result, status, next_at)
                        await outbox.cancel_pending(
                            conn, delivery["endpoint_id"], reason=_GONE_REASON
                        )
                else:
                    await self._record(conn, delivery, started_at, result, status, next_at)
        except _DB_ERRORS as exc:
            # Sent but not recorded: the lease ends and it is sent again, same webhook-id.
            log.warning(
                "events.record_failed",
                delivery_id=delivery["delivery_id"],
                error=type(exc).__name__,
            )
            return "unrecorded", result.status_code
        EVENT_DELIVERIES.labels(outcome).inc()
        if result.delivered:
            lag = (self._clock() - delivery["event_created_at"]).total_seconds()
            EVENT_DELIVERY_LAG.observe(max(lag, 0.0))
        log.info(
            "events.attempt",
            delivery_id=delivery["delivery_id"],
            event_id=delivery["event_id"],
            endpoint_id=delivery["endpoint_id"],
            attempt=delivery["attempts"],
            outcome=outcome,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
        )
        return outcome, result.status_code

    @staticmethod
    async def _record(
        conn: asyncpg.Connection,
        delivery: asyncpg.Record,
        started_at: datetime,
        result: AttemptResult,
        status: str,
        next_at: datetime | None,
    ) -> None:
        await outbox.record_attempt(
            conn,
            delivery["delivery_id"],
            delivery["attempts"],
            started_at=started_at,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=result.error,
            response_body=result.response_body,
            status=status,
            next_attempt_at=next_at,
        )
