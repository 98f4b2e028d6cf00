"""PostgreSQL reachable but silent (a proxy that stops forwarding and keeps its sockets open,
as a failing network or a stuck failover does): every wait is bounded by H2S_DB_TIMEOUT_S,
the answer is 503 `database_unavailable` with Retry-After, nothing is half-written, and
everything recovers when the database speaks again.

The bounds asserted here are correctness bounds (an answer came long before the 30 s at
which storefronts give up, instead of the 35 s a silent database used to cost), set at a
generous multiple of the configured timeout; they are not performance timings.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from h2s_checkout.bootstrap import open_services
from h2s_checkout.domain.errors import DatabaseUnavailable
from h2s_checkout.flows.periodic import every
from h2s_checkout.flows.reaper import reap_keys
from h2s_checkout.settings import Settings
from h2s_checkout.store.pool import connection, create_pool, database_budget
from servers import ServerProcess
from support import checkout_body, table_counts

pytestmark = pytest.mark.slow

TIMEOUT_S = 2.0
# An answer within this came from the bound, not from a 30 s statement timeout or a hang.
ANSWERED_WITHIN_S = 4 * TIMEOUT_S
NOT_FINAL = ("pending_payment", "job_queued", "failed")
T = TypeVar("T")


class SilentProxy:
    """A TCP proxy on 127.0.0.1 in front of PostgreSQL, on a thread with its own loop.

    `silence()` stops forwarding in both directions, closes included, while every socket
    stays open: bytes wait as they would in a partitioned network's retransmissions.
    `speak()` delivers them and carries on.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.port = 0

    def start(self) -> SilentProxy:
        self._thread.start()
        self.port = self._call(self._listen())
        return self

    def silence(self) -> None:
        self._call(self._set(speaking=False))

    def speak(self) -> None:
        self._call(self._set(speaking=True))

    def close(self) -> None:
        self._call(self._shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> int:
        self._speaking = asyncio.Event()
        self._speaking.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _set(self, *, speaking: bool) -> None:
        if speaking:
            self._speaking.set()
        else:
            self._speaking.clear()

    async def _shut(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._speaking.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await self._speaking.wait()
            try:
                data = await reader.read(65536)
            except OSError:
                data = b""
            # Whatever arrived as the silence began (bytes or the peer's close) waits for it
            # to end, like the rest.
            await self._speaking.wait()
            if not data:
                writer.close()  # the other pipe ends when its read sees this close
                return
            writer.write(data)
            await writer.drain()


@pytest.fixture
def proxy(database_url: str) -> Iterator[SilentProxy]:
    parts = urlsplit(database_url)
    if parts.hostname is None or parts.port is None:
        pytest.skip("the proxy needs the test database on TCP (TEST_DATABASE_URL is not)")
    silent = SilentProxy(parts.hostname, parts.port).start()
    yield silent
    silent.close()


def through(database_url: str, proxy: SilentProxy) -> str:
    parts = urlsplit(database_url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = await request
    return answer, time.monotonic() - started


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "database_unavailable"
    assert int(answer.headers["retry-after"]) >= 1


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], what: str, limit_s: float = 30.0
) -> None:
    deadline = time.monotonic() + limit_s
    while not await predicate():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.1)


async def no_transaction_left_open(db) -> bool:
    """No backend of the proxied connections sits in a transaction (holding locks)."""
    left = await db.fetchval(
        "select count(*) from pg_stat_activity"
        " where state like 'idle in transaction%' and pid <> pg_backend_pid()"
    )
    return bool(left == 0)


@pytest.fixture
async def server(
    database_url, emulator, db, stripe, proxy, tmp_path
) -> AsyncIterator[ServerProcess]:
    """The service as a real process whose database is behind the proxy."""
    process = ServerProcess(
        through(database_url, proxy),
        emulator.base_url,
        tmp_path,
        H2S_DB_TIMEOUT_S=str(TIMEOUT_S),
        H2S_DB_POOL_MIN="1",
        H2S_DB_POOL_MAX="3",
        H2S_RECONCILE_INTERVAL_S="0",
        H2S_CHECKOUT_LEASE_S="1",
    )
    await asyncio.to_thread(process.start)
    try:
        yield process
    finally:
        proxy.speak()  # a stopping server must be able to say goodbye
        await asyncio.to_thread(process.stop)


async def test_a_silent_database_answers_503_within_the_bound_and_writes_nothing(server, proxy, db):
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        warm = await http.post("/api/checkout", json=checkout_body(email="warm@example.com"))
        assert warm.status_code == 201, warm.text
        before = await table_counts(db)

        proxy.silence()
        # More checkouts than the pool has connections: some wait on a statement, some on
        # the pool, some on a new connection that never finishes its handshake.
        answers = await asyncio.gather(
            *(
                timed(http.post("/api/checkout", json=checkout_body(email=f"silent-{n}@x.com")))
                for n in range(5)
            ),
            timed(http.get("/readyz")),
        )
        *checkouts, (ready, ready_s) = answers
        for answer, seconds in checkouts:
            assert_unavailable(answer)
            assert seconds < ANSWERED_WITHIN_S, seconds
        assert ready.status_code == 503, ready.text
        assert ready.json()["status"] == "unavailable"
        assert ready_s < ANSWERED_WITHIN_S, ready_s
        assert await table_counts(db) == before

        proxy.speak()
        # The next checkouts succeed at once: broken connections were closed, not reused.
        for n in range(3):
            answer = await http.post("/api/checkout", json=checkout_body(email=f"after-{n}@x.com"))
            assert answer.status_code == 201, answer.text
        assert (await http.get("/readyz")).status_code == 200

    # What the silence held back reached PostgreSQL after it, as a network delivers what
    # it held. No transaction is left holding locks, and nothing is half-written: phase 1 is
    # one statement, so a silent checkout whose call arrived late exists whole (checkout,
    # recipient, order, job at job_queued, its trace rows) or not at all. Its client got a
    # 503; a retry after the lease, or the reconciler, finishes it like any interrupted
    # checkout.
    await wait_for(lambda: no_transaction_left_open(db), "the held transactions to end")
    after = await table_counts(db)
    late = await db.fetch(
        """
        select c.state, o.status as order_status, j.status as job_status, r.recipient_id,
               (select count(*) from h2s_checkout_traces t
                where t.checkout_id = c.checkout_id and t.kind = 'transition') as transitions
        from h2s_checkouts c
        left join h2s_orders o on o.checkout_id = c.checkout_id
        left join h2s_dispatch_jobs j on j.order_id = o.order_id
        left join h2s_recipients r on r.recipient_id = o.recipient_id
        where c.request_body->'customer'->>'email' like 'silent-%'
        """
    )
    for row in late:
        assert (row["state"], row["order_status"], row["job_status"]) == (
            "job_queued",
            "pending_payment",
            "queued",
        )
        assert row["recipient_id"] is not None
        assert row["transitions"] == 1
    for table in ("h2s_checkouts", "h2s_orders", "h2s_dispatch_jobs", "h2s_recipients"):
        assert after[table] == before[table] + 3 + len(late), (table, before, after)
    assert (
        await db.fetchval(
            "select count(*) from h2s_checkouts where state = any($1::text[])"
            " and request_body->'customer'->>'email' not like 'silent-%'",
            list(NOT_FINAL),
        )
        == 0
    )


async def test_silence_between_the_phases_is_finished_by_the_retry(server, proxy, db, stripe):
    """The database falls silent while Stripe makes the session: the link cannot be
    written, the answer is a bounded 503 with the trace id, and the retry after the
    lease gets the same order and the one session."""
    stripe.faults.add("latency", "POST /v1/checkout/sessions", seconds=1.0)
    body = checkout_body(email="between@example.com")
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        pending = asyncio.create_task(http.post("/api/checkout", json=body))

        async def queued() -> bool:
            return bool(
                await db.fetchval("select count(*) from h2s_checkouts where state = 'job_queued'")
            )

        await wait_for(queued, "phase 1 to commit")
        proxy.silence()
        silenced_at = time.monotonic()
        answer = await pending
        assert time.monotonic() - silenced_at < ANSWERED_WITHIN_S
        assert_unavailable(answer)
        trace_id = answer.json()["checkout_trace_id"]

        proxy.speak()
        stripe.faults.clear()
        await asyncio.sleep(1.2)  # the lease (H2S_CHECKOUT_LEASE_S=1) runs out
        retry = await http.post("/api/checkout", json=body)
    assert retry.status_code == 201, retry.text
    assert retry.json()["checkout_trace_id"] == trace_id
    await wait_for(lambda: no_transaction_left_open(db), "the held transactions to end")
    rows = await db.fetch("select state from h2s_checkouts")
    assert [r["state"] for r in rows] == ["session_created"]
    assert await db.fetchval("select count(*) from h2s_orders") == 1
    assert await db.fetchval("select count(*) from h2s_dispatch_jobs") == 1
    order_id = retry.json()["order_id"]
    assert [s["status"] for s in stripe.sessions if s["client_reference_id"] == order_id] == [
        "open"
    ]


async def test_a_request_budget_spans_its_blocks_and_drops_the_silent_connection(
    database_url, proxy, db
):
    pool = await create_pool(through(database_url, proxy), min_size=1, max_size=1, timeout_s=1.0)
    try:
        opened = proxy.accepted
        proxy.silence()
        with database_budget():
            with pytest.raises(DatabaseUnavailable, match="no answer within"):
                async with connection(pool) as conn:
                    await conn.fetchval("select 1")
            # The request's time is spent: the next block does not wait another bound.
            with pytest.raises(DatabaseUnavailable, match="spent"):
                async with connection(pool) as conn:
                    await conn.fetchval("select 2")
        proxy.speak()
        async with connection(pool) as conn:
            assert await conn.fetchval("select 3") == 3
        # The timed-out connection was closed and replaced, not handed out again.
        assert proxy.accepted == opened + 1
    finally:
        await pool.close()


async def test_background_passes_fail_on_a_silent_database_and_carry_on(
    settings: Settings, database_url, proxy, db
):
    outcomes: list[tuple[float, str]] = []

    async def one_pass() -> None:
        try:
            await services.reconciler.run_once()
            await reap_keys(services.pool, timedelta(hours=72))
        except Exception as exc:
            outcomes.append((time.monotonic(), type(exc).__name__))
            raise
        outcomes.append((time.monotonic(), "ok"))

    def since(at: float, outcome: str) -> Callable[[], Awaitable[bool]]:
        async def seen() -> bool:
            return any(t > at and o == outcome for t, o in outcomes)

        return seen

    resolved = settings.with_overrides(database_url=through(database_url, proxy), db_timeout_s=1.0)
    async with (
        open_services(resolved) as services,
        every(timedelta(seconds=0.1), one_pass, name=f"test-{uuid.uuid4().hex}"),
    ):
        await wait_for(since(0, "ok"), "a first pass")
        proxy.silence()
        silenced_at = time.monotonic()
        await wait_for(since(silenced_at, "DatabaseUnavailable"), "a pass to give up")
        proxy.speak()
        spoke_at = time.monotonic()
        await wait_for(since(spoke_at, "ok"), "a pass to succeed again")
    failed = [(t, o) for t, o in outcomes if t > silenced_at and o != "ok"]
    assert {o for _, o in failed} == {"DatabaseUnavailable"}


async def test_replays_waiting_together_on_a_silent_database_each_get_a_bounded_503(
    server, proxy, db
):
    """Replays of the keys a worker answered share calls: the first goes alone, the rest
    wait for it together. With the database silent, each still gets its own 503 within the
    bound (its wait for the call ahead counts), and each replays once it speaks again."""
    bodies = [checkout_body(email=f"replayed-{n}@x.com") for n in range(2)]
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        first = [await http.post("/api/checkout", json=body) for body in bodies]
        assert [a.status_code for a in first] == [201, 201]

        proxy.silence()
        answers = await asyncio.gather(
            *(timed(http.post("/api/checkout", json=bodies[n % 2])) for n in range(6))
        )
        for answer, seconds in answers:
            assert_unavailable(answer)
            assert seconds < ANSWERED_WITHIN_S, seconds

        proxy.speak()
        again = await asyncio.gather(
            *(http.post("/api/checkout", json=bodies[n % 2]) for n in range(6))
        )
    for n, answer in enumerate(again):
        assert answer.status_code == 201, answer.text
        assert answer.headers["idempotent-replayed"] == "true"
        assert answer.json() == first[n % 2].json()
    await wait_for(lambda: no_transaction_left_open(db), "the held transactions to end")
    assert await db.fetchval("select count(*) from h2s_orders") == 2
