"""Deliveries racing a 410 (issue 29): eight checkouts at once fan an event out to an
endpoint that answers every request 410 Gone, and two delivery loops (two workers'
worth) send them. Over rounds, each with a new endpoint: no deadlock, every request sent
has its attempt record, no request arrives once the endpoint is recorded as gone, and no
delivery is left pending for the disabled endpoint."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import timedelta

import asyncpg
import pytest
from structlog.testing import capture_logs

from events_receiver import Delivery, EventReceiver
from h2s_checkout.flows.event_delivery import DeliverySettings, EventDeliverer
from support import checkout_body

ENDPOINTS = "/api/event-endpoints"
ROUNDS = 8
AT_ONCE = 8


class EndpointStatus:
    """The endpoint's status in the database, read from the receiver's thread as each
    request arrives, on a connection and event loop of its own (not the test's, which
    runs the deliverers: a lookup queued behind them would see their later commits)."""

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._conn: asyncpg.Connection = self._run(asyncpg.connect(dsn))
        self.endpoint_id = ""
        self.seen_gone: list[str] = []  # webhook-ids that arrived after the 410 was recorded

    def _run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def on_request(self, request: Delivery) -> None:
        status = self._run(
            self._conn.fetchval(
                "select status from h2s_event_endpoints where endpoint_id = $1", self.endpoint_id
            )
        )
        if status != "enabled":
            self.seen_gone.append(request.webhook_id)

    def close(self) -> None:
        self._run(self._conn.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


@pytest.fixture
def endpoint_status(database_url: str) -> Iterator[EndpointStatus]:
    watch = EndpointStatus(database_url)
    try:
        yield watch
    finally:
        watch.close()


@pytest.fixture
async def two_loops(database_url: str) -> AsyncIterator[None]:
    """Two delivery loops on this process, as two workers run them, woken by NOTIFY."""
    settings = DeliverySettings(
        timeout=timedelta(seconds=2), poll_interval=timedelta(seconds=0.2), allow_private=True
    )
    async with AsyncExitStack() as stack:
        for _ in range(2):
            deliverer = EventDeliverer(database_url, settings, listen_dsn=database_url)
            await stack.enter_async_context(deliverer.running())
        yield


async def settled(db: asyncpg.Connection, endpoint_id: str, receiver: EventReceiver) -> dict:
    """The endpoint once it is disabled, nothing of it is pending and every request sent
    has its attempt; or as it stands when that has not come within a bound (the defect)."""
    for _ in range(300):
        state = dict(
            await db.fetchrow(
                """
                select p.status,
                       (select count(*) from h2s_event_deliveries d
                        where d.endpoint_id = p.endpoint_id and d.status = 'pending') as pending,
                       (select count(*) from h2s_event_deliveries d
                        where d.endpoint_id = p.endpoint_id) as deliveries,
                       (select count(*) from h2s_event_attempts a
                        join h2s_event_deliveries d using (delivery_id)
                        where d.endpoint_id = p.endpoint_id) as attempts
                from h2s_event_endpoints p where p.endpoint_id = $1
                """,
                endpoint_id,
            )
        )
        state["requests"] = len(receiver.snapshot())
        if (
            state["status"] == "disabled"
            and state["pending"] == 0
            and state["requests"] == state["attempts"]
        ):
            return state
        await asyncio.sleep(0.05)
    return state


async def test_eight_deliveries_racing_a_410_lose_nothing_and_stop_at_once(
    client, admin, db, two_loops, endpoint_status
):
    with capture_logs() as logs:
        for round_ in range(ROUNDS):
            with EventReceiver([410] * 64, on_request=endpoint_status.on_request) as gone:
                made = await client.post(ENDPOINTS, json={"url": gone.url}, headers=admin)
                endpoint_id = made.json()["id"]
                endpoint_status.endpoint_id = endpoint_id
                answers = await asyncio.gather(
                    *(
                        client.post(
                            "/api/checkout", json=checkout_body(email=f"r{round_}-{n}@example.com")
                        )
                        for n in range(AT_ONCE)
                    )
                )
                assert [a.status_code for a in answers] == [201] * AT_ONCE

                state = await settled(db, endpoint_id, gone)
                requests = gone.snapshot()

            where = f"round {round_}: {state}"
            assert state["status"] == "disabled", where
            assert state["pending"] == 0, f"deliveries left pending, {where}"
            # Every request that left has its attempt, with the answer it got.
            recorded = await db.fetch(
                """
                select e.event_id, a.status_code
                from h2s_event_attempts a
                join h2s_event_deliveries d using (delivery_id)
                join h2s_events e using (event_id)
                where d.endpoint_id = $1
                """,
                endpoint_id,
            )
            assert sorted(r["event_id"] for r in recorded) == sorted(
                r.webhook_id for r in requests
            ), f"requests sent without their attempt record, {where}"
            assert {r["status_code"] for r in recorded} == {410}, where
            assert endpoint_status.seen_gone == [], (
                f"requests arrived after the 410 was recorded, {where}"
            )

    failed = [e for e in logs if e["event"] in ("events.record_failed", "events.lease_failed")]
    assert failed == []
    assert not [e for e in logs if "Deadlock" in str(e)]
