"""h2s_enqueue_order_event and its call in h2s_link_session: an event is written by the
statement that changes the order, or not at all."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from h2s_checkout.bootstrap import build_gateway, build_services
from h2s_checkout.domain.events import new_secret
from h2s_checkout.store import outbox
from h2s_checkout.store.pool import _keep_session, init_connection
from support import checkout_body, command_for


async def add_endpoint(db, endpoint_id: str, types: list[str] | None = None, status="enabled"):
    await outbox.insert_endpoint(
        db,
        endpoint_id,
        url="http://127.0.0.1:9/h",
        description="",
        event_types=types or ["*"],
        secret=new_secret(),
    )
    if status != "enabled":
        await outbox.end_endpoint(db, endpoint_id, status=status, reason="test")


@pytest.fixture
async def logged_services(settings, db, stripe):
    """The service's own flow on a pool whose every query is recorded."""
    queries: list[str] = []

    async def init(conn: asyncpg.Connection) -> None:
        await init_connection(conn)
        conn.add_query_logger(lambda record: queries.append(record.query))

    # Released without a reset query, as the service's pool (store/pool.py create_pool).
    pool = await asyncpg.create_pool(
        settings.database_url, min_size=1, max_size=2, init=init, reset=_keep_session
    )
    gateway = build_gateway(settings)
    try:
        yield build_services(settings, pool, gateway), queries
    finally:
        await gateway.close()
        await pool.close()


async def test_a_subscriber_adds_no_round_trip_to_a_new_checkout(logged_services, db):
    services, queries = logged_services
    flow = services.checkout_flow
    await services.catalog.items()  # the catalog is cached once per process
    # A connection's first use of a statement also introspects its types (the limit
    # buckets are arrays): once per connection, not per checkout.
    await flow.begin(command_for(checkout_body("warm@example.com")))

    queries.clear()
    alone = await flow.begin(command_for(checkout_body("alone@example.com")))
    without = list(queries)
    await add_endpoint(db, "ep_one")
    queries.clear()
    watched = await flow.begin(command_for(checkout_body("watched@example.com")))
    with_one = list(queries)

    assert [q.split("(")[0] for q in without] == [
        "select * from h2s_begin_checkout",
        "select * from h2s_link_session",
    ]
    assert with_one == without
    rows = await db.fetch(
        "select e.order_id, e.type, e.sequence, count(d.delivery_id) as deliveries"
        " from h2s_events e left join h2s_event_deliveries d using (event_id)"
        " group by 1, 2, 3 order by min(e.created_at)"
    )
    # With nobody subscribed nothing is written; the watched order's event has its delivery.
    assert [tuple(r) for r in rows] == [(watched.body["order_id"], "order.created", 1, 1)]
    assert alone.body["order_id"]


async def test_the_event_snapshots_the_order_and_job_after_the_change(db, client):
    await add_endpoint(db, "ep_all")
    answer = (await client.post("/api/checkout", json=checkout_body())).json()
    order_id = answer["order_id"]

    async with db.transaction():
        await db.execute(
            "update h2s_orders set status = 'paid', paid_at = now() where order_id = $1", order_id
        )
        await db.execute(
            "update h2s_dispatch_jobs set status = 'dispatchable' where order_id = $1", order_id
        )
        event_id = await outbox.enqueue_order_event(db, order_id, "order.paid")

    event = await db.fetchrow("select * from h2s_events where event_id = $1", event_id)
    body = event["body"]
    assert (event["type"], event["sequence"]) == ("order.paid", 2)
    assert body["type"] == "order.paid"
    assert body["timestamp"].endswith("Z")
    data = body["data"]
    assert data["sequence"] == 2
    assert data["checkout_trace_id"] == answer["checkout_trace_id"]
    assert (data["order"]["order_id"], data["order"]["status"]) == (order_id, "paid")
    assert data["order"]["session_id"] == answer["pay"]["session_id"]
    assert data["order"]["metadata_json"]["dispatch_job_id"] == answer["job_id"]
    assert (data["job"]["job_id"], data["job"]["status"]) == (answer["job_id"], "dispatchable")


async def test_fan_out_follows_event_types_and_skips_endpoints_not_enabled(db, client):
    await add_endpoint(db, "ep_paid_only", ["order.paid"])
    await add_endpoint(db, "ep_created_only", ["order.created"])
    await add_endpoint(db, "ep_off", status="disabled")
    await add_endpoint(db, "ep_gone", status="deleted")
    order_id = (await client.post("/api/checkout", json=checkout_body())).json()["order_id"]

    deliveries = await db.fetch(
        "select e.type, d.endpoint_id from h2s_event_deliveries d join h2s_events e"
        " using (event_id) order by e.sequence"
    )
    assert [tuple(d) for d in deliveries] == [("order.created", "ep_created_only")]

    async with db.transaction():
        await outbox.enqueue_order_event(db, order_id, "order.paid")
    assert (
        await db.fetchval(
            "select endpoint_id from h2s_event_deliveries d join h2s_events e using (event_id)"
            " where e.type = 'order.paid'"
        )
        == "ep_paid_only"
    )


async def test_an_event_rolls_back_with_its_change(db, client):
    await add_endpoint(db, "ep_all")
    order_id = (await client.post("/api/checkout", json=checkout_body())).json()["order_id"]

    async def change_then_fail() -> None:
        async with db.transaction():
            await db.execute(
                "update h2s_orders set status = 'cancelled' where order_id = $1", order_id
            )
            await outbox.enqueue_order_event(db, order_id, "order.cancelled")
            raise RuntimeError("the change fails after its event was written")

    with pytest.raises(RuntimeError, match="the change fails"):
        await change_then_fail()

    assert await db.fetchval("select status from h2s_orders") == "pending_payment"
    assert [r["type"] for r in await db.fetch("select type from h2s_events")] == ["order.created"]
    assert await db.fetchval("select count(*) from h2s_event_deliveries") == 1
    assert await db.fetchval("select max(sequence) from h2s_events") == 1


async def test_unknown_orders_and_types_are_refused(db, client):
    order_id = (await client.post("/api/checkout", json=checkout_body())).json()["order_id"]
    with pytest.raises(asyncpg.InvalidParameterValueError, match="unknown event type"):
        await outbox.enqueue_order_event(db, order_id, "order.shipped")  # subscribed or not
    await add_endpoint(db, "ep_all")
    with pytest.raises(asyncpg.PostgresError, match="no order"):
        await outbox.enqueue_order_event(db, "ORD-NOPE", "order.paid")


async def test_with_no_subscriber_nothing_is_written(db, client):
    await add_endpoint(db, "ep_paid_only", ["order.paid"])
    order_id = (await client.post("/api/checkout", json=checkout_body())).json()["order_id"]

    assert await outbox.enqueue_order_event(db, order_id, "order.expired") is None
    assert await db.fetchval("select count(*) from h2s_events") == 0


async def test_a_notification_is_sent_when_there_is_something_to_deliver(db, database_url, client):
    listener = await asyncpg.connect(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(outbox.NOTIFY_CHANNEL, lambda *args: heard.put_nowait(args[2]))
    try:
        await add_endpoint(db, "ep_all")
        await client.post("/api/checkout", json=checkout_body())
        assert await asyncio.wait_for(heard.get(), 10) == outbox.NOTIFY_CHANNEL
    finally:
        await listener.close()


async def test_events_of_one_order_take_sequences_in_commit_order(db, database_url, client):
    await add_endpoint(db, "ep_all")
    order_id = (await client.post("/api/checkout", json=checkout_body())).json()["order_id"]
    others = [await asyncpg.connect(database_url) for _ in range(4)]
    try:

        async def emit(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await outbox.enqueue_order_event(conn, order_id, "order.paid")

        await asyncio.gather(*(emit(c) for c in others))
    finally:
        for conn in others:
            await conn.close()

    rows = await db.fetch("select sequence, created_at from h2s_events order by sequence")
    assert [r["sequence"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["created_at"] <= datetime.now(UTC) for r in rows)


@pytest.mark.parametrize("first", ["enqueue", "prune"])
async def test_pruning_beside_a_new_event_never_reuses_a_sequence(db, database_url, client, first):
    """The reaper deletes an order's events (its latest too) while another transaction
    writes the order's next event: whichever takes the order's row lock first, the next
    sequence is above every one the order ever had."""
    await add_endpoint(db, "ep_all")
    order_id = (await client.post("/api/checkout", json=checkout_body())).json()["order_id"]
    async with db.transaction():
        await outbox.enqueue_order_event(db, order_id, "order.paid")  # sequences 1, 2
    await db.execute("update h2s_event_deliveries set status = 'delivered'")
    writer = await asyncpg.connect(database_url)
    reaper = await asyncpg.connect(database_url)
    await init_connection(writer)
    far_future = datetime(2999, 1, 1, tzinfo=UTC)
    try:
        writing = writer.transaction()
        pruning = reaper.transaction()
        if first == "enqueue":
            await writing.start()
            await outbox.enqueue_order_event(writer, order_id, "order.cancelled")  # 3
            await pruning.start()
            pruned = asyncio.create_task(outbox.prune_events(reaper, far_future, batch=100))
            await asyncio.sleep(0.3)
            assert not pruned.done()  # waits for the order's row lock
            await writing.commit()
            await pruned
            await pruning.commit()
        else:
            await pruning.start()
            assert await outbox.prune_events(reaper, far_future, batch=100) == 2
            await writing.start()
            written = asyncio.create_task(
                outbox.enqueue_order_event(writer, order_id, "order.cancelled")
            )
            await asyncio.sleep(0.3)
            assert not written.done()  # waits for the reaper's row lock
            await pruning.commit()
            await written
            await writing.commit()
    finally:
        await writer.close()
        await reaper.close()

    async with db.transaction():
        await outbox.enqueue_order_event(db, order_id, "order.refund_pending")
    sequences = await db.fetch(
        "select sequence from h2s_events where order_id = $1 order by sequence", order_id
    )
    assert [r["sequence"] for r in sequences][-1] == 4
    assert len({r["sequence"] for r in sequences}) == len(sequences)
