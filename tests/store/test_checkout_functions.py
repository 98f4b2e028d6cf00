"""h2s_begin_checkout and h2s_link_session: phase 1 and phase 3, one round trip each."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from h2s_checkout.domain.cart import CatalogItem, cart_fingerprint, price_cart
from h2s_checkout.domain.machine import STATES
from h2s_checkout.flows.begin_checkout import CheckoutFlow, CheckoutSettings, _claim_keys
from h2s_checkout.store import checkouts
from h2s_checkout.store.pool import init_connection
from h2s_checkout.store.traces import Step, transition_row
from support import checkout_body, command_for, table_counts

CATALOG = {"tv-mount": CatalogItem("tv-mount", "TV wall mounting", "", 14900, "usd", 10)}
LEASE = timedelta(seconds=90)


def begin_args(body: dict[str, Any], now: datetime, key: str | None = None) -> dict[str, Any]:
    """The arguments the flow passes for a request, built by the flow's own code."""
    command = command_for(body, key)
    cart = price_cart(command.items, CATALOG)
    flow = CheckoutFlow(None, None, None, CheckoutSettings(public_base_url="http://shop.test"))  # type: ignore[arg-type]
    plan = flow._new_plan(command, cart, now)
    return {
        "keys": _claim_keys(command, cart_fingerprint(command.items)),
        "window_start": now - timedelta(minutes=5),
        "now": now,
        "lease_until": now + LEASE,
        "new": CheckoutFlow._new_checkout(plan, command, cart, now),
        "steps": [Step("checkout.received", now, None, {}).row()],
        "transition": transition_row("queue_job", "pending_payment", "job_queued", now),
    }


async def begin(conn, args: dict[str, Any]) -> asyncpg.Record:
    keys = args.pop("keys")
    try:
        return await checkouts.begin_checkout(conn, keys, **args)
    finally:
        args["keys"] = keys


async def events(db, checkout_id) -> list[str]:
    rows = await db.fetch(
        "select event from h2s_checkout_traces where checkout_id = $1 order by seq", checkout_id
    )
    return [r["event"] for r in rows]


async def link(db, row, at: datetime) -> asyncpg.Record:
    return await checkouts.link_session(
        db,
        row["checkout_id"],
        source="job_queued",
        target="session_created",
        at=at,
        session_id=f"cs_test_{row['checkout_id'].hex}",
        job_id=row["job_id"],
        response_body={"ok": True, "order_id": row["order_id"]},
        trace=[transition_row("create_session", "job_queued", "session_created", at)],
    )


async def test_a_new_checkout_is_written_whole_in_one_call(db):
    now = datetime.now(UTC)
    row = await begin(db, begin_args(checkout_body(), now))

    assert row["outcome"] == "created"
    assert row["state"] == "job_queued"
    counts = await table_counts(db)
    assert (counts["h2s_checkouts"], counts["h2s_orders"], counts["h2s_dispatch_jobs"]) == (1, 1, 1)
    assert counts["h2s_recipients"] == 1
    job = await db.fetchrow("select * from h2s_dispatch_jobs")
    assert (job["status"], job["step_id"]) == ("queued", "bundle-default.schedule")
    assert job["due_at"] == now + timedelta(hours=24)
    assert await events(db, row["checkout_id"]) == [
        "checkout.received",
        "order_and_job.created",
        "queue_job",
    ]


async def test_an_answered_checkout_is_replayed_with_its_stored_answer(db):
    now = datetime.now(UTC)
    args = begin_args(checkout_body(), now)
    first = await begin(db, args)
    assert (await link(db, first, now))["linked"] is True

    again = await begin(db, begin_args(checkout_body(), now + timedelta(seconds=1)))

    assert again["outcome"] == "replayed"
    assert again["checkout_id"] == first["checkout_id"]
    assert again["response_status"] == 201
    assert '"order_id"' in again["response_json"]
    assert (await table_counts(db))["h2s_orders"] == 1
    assert (await events(db, first["checkout_id"]))[-1] == "checkout.replayed"


async def test_a_live_lease_is_a_conflict_and_a_dead_one_is_taken_over(db):
    now = datetime.now(UTC)
    first = await begin(db, begin_args(checkout_body(), now))

    held = await begin(db, begin_args(checkout_body(), now + timedelta(seconds=10)))
    assert held["outcome"] == "conflict"

    later = now + LEASE + timedelta(seconds=1)
    taken = await begin(db, begin_args(checkout_body(), later))
    assert taken["outcome"] == "resumed"
    assert taken["checkout_id"] == first["checkout_id"]
    assert taken["attempts"] == 2
    assert taken["session_request"]["idempotency_key"].endswith(f"{first['checkout_id']}-session")
    assert (await events(db, first["checkout_id"]))[-2:] == [
        "checkout.conflict",
        "checkout.resumed",
    ]
    assert (await table_counts(db))["h2s_orders"] == 1


async def test_a_client_key_with_another_body_writes_nothing(db):
    now = datetime.now(UTC)
    await begin(db, begin_args(checkout_body(), now, key="k-1"))
    before = await table_counts(db)

    other = await begin(db, begin_args(checkout_body(email="bo@example.com"), now, key="k-1"))

    assert other["outcome"] == "key_reused"
    assert await table_counts(db) == before


async def test_past_the_window_the_same_booking_is_a_new_checkout(db):
    now = datetime.now(UTC)
    first = await begin(db, begin_args(checkout_body(), now))
    await link(db, first, now)

    later = await begin(db, begin_args(checkout_body(), now + timedelta(minutes=5, seconds=1)))

    assert later["outcome"] == "created"
    assert later["checkout_id"] != first["checkout_id"]


async def test_without_a_default_dispatch_flow_nothing_is_written(db):
    await db.execute("update h2s_dispatch_sequences set is_default = false")
    try:
        with pytest.raises(asyncpg.PostgresError) as raised:
            await begin(db, begin_args(checkout_body(), datetime.now(UTC)))
        assert raised.value.sqlstate == "H2S01"
        assert set((await table_counts(db)).values()) == {0}
    finally:
        await db.execute(
            "update h2s_dispatch_sequences set is_default = true"
            " where sequence_id = 'bundle-default'"
        )


async def test_phase_3_refuses_a_checkout_that_moved_and_says_where_it_is(db):
    now = datetime.now(UTC)
    row = await begin(db, begin_args(checkout_body(), now))
    assert (await link(db, row, now))["linked"] is True

    again = await link(db, row, now)

    assert again["linked"] is False
    assert again["state"] == "session_created"
    assert again["response_status"] == 201
    assert (await events(db, row["checkout_id"])).count("create_session") == 1
    order = await db.fetchrow("select * from h2s_orders")
    assert order["session_id"] == f"cs_test_{row['checkout_id'].hex}"
    assert order["metadata_json"]["dispatch_job_id"] == str(row["job_id"])


async def test_racing_duplicates_make_one_checkout(database_url, db):
    """The lock is taken before the second look, and that look sees what the holder
    committed: of ten copies sent at once, one creates and the rest are refused."""
    now = datetime.now(UTC)
    conns = [await asyncpg.connect(database_url) for _ in range(10)]
    try:
        for conn in conns:
            await init_connection(conn)
        rows = await asyncio.gather(
            *(begin(conn, begin_args(checkout_body(), now)) for conn in conns)
        )
    finally:
        for conn in conns:
            await conn.close()
    outcomes = sorted(r["outcome"] for r in rows)
    assert outcomes == ["conflict"] * 9 + ["created"]
    assert len({r["checkout_id"] for r in rows}) == 1
    assert (await table_counts(db))["h2s_orders"] == 1


def replay_call(args: dict[str, Any]) -> dict[str, Any]:
    """The call a worker makes when it expects a replay: no new checkout in it."""
    return {**args, "new": None, "steps": None, "transition": None}


async def test_the_replay_call_writes_nothing_and_takes_no_lock_for_an_unknown_key(
    database_url, db
):
    now = datetime.now(UTC)
    args = begin_args(checkout_body(), now)
    # Another transaction holds the key's lock: a call that waited for it would hang here.
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute(
                "select pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"h2s-checkout:derived:{args['keys'].derived_key}",
            )
            row = await asyncio.wait_for(begin(db, replay_call(args)), 5)
    finally:
        await holder.close()

    assert (row["outcome"], row["checkout_id"]) == ("absent", None)
    assert await table_counts(db) == dict.fromkeys(await table_counts(db), 0)


async def test_the_replay_call_replays_an_answered_checkout_and_leaves_others_to_the_whole_call(
    db,
):
    now = datetime.now(UTC)
    first = await begin(db, begin_args(checkout_body(), now))

    # Not answered yet (its lease is live): the whole call decides, so nothing is written.
    pending = await begin(db, replay_call(begin_args(checkout_body(), now)))
    assert (pending["outcome"], pending["checkout_id"]) == ("absent", first["checkout_id"])
    assert await events(db, first["checkout_id"]) == [
        "checkout.received",
        "order_and_job.created",
        "queue_job",
    ]

    await link(db, first, now)
    again = await begin(db, replay_call(begin_args(checkout_body(), now + timedelta(seconds=1))))
    assert (again["outcome"], again["checkout_id"]) == ("replayed", first["checkout_id"])
    assert again["response_status"] == 201
    assert (await events(db, first["checkout_id"]))[-1] == "checkout.replayed"
    assert (await table_counts(db))["h2s_orders"] == 1


async def test_the_replay_call_refuses_a_client_key_reused_with_another_body(db):
    now = datetime.now(UTC)
    first = await begin(db, begin_args(checkout_body(), now, key="key-1"))
    await link(db, first, now)
    other = checkout_body(email="bea@example.com")

    row = await begin(db, replay_call(begin_args(other, now, key="key-1")))

    assert row["outcome"] == "key_reused"
    assert (await table_counts(db))["h2s_orders"] == 1


async def test_replay_calls_together_are_each_decided_as_alone_in_order(db):
    now = datetime.now(UTC)
    home = begin_args(checkout_body(), now)
    keyed = begin_args(checkout_body(email="bo@example.com"), now, key="key-1")
    for args in (home, keyed):
        await link(db, await begin(db, args), now)
    pending = begin_args(checkout_body(email="cy@example.com"), now)
    await begin(db, pending)  # in phase 2: not answered yet
    later = now + timedelta(seconds=1)
    reused = begin_args(checkout_body(email="di@example.com"), later, key="key-1")
    unknown = begin_args(checkout_body(email="ed@example.com"), later)
    calls = [replay_call(begin_args(checkout_body(), later)), reused, unknown, pending, home]

    # What each call alone answers, rolled back so that the call together starts alike.
    alone = []
    tx = db.transaction()
    await tx.start()
    for args in calls:
        alone.append(await begin(db, replay_call(args)))
    await tx.rollback()
    traces_before = await db.fetchval("select count(*) from h2s_checkout_traces")

    together = await checkouts.replay_checkouts(
        db,
        [checkouts.ReplayCall(a["keys"], a["window_start"], a["now"]) for a in calls],
    )

    assert [r["ord"] for r in together] == [1, 2, 3, 4, 5]
    assert [r["outcome"] for r in together] == [
        "replayed",
        "key_reused",
        "absent",
        "absent",
        "replayed",
    ]
    for one, joint in zip(alone, together, strict=True):
        assert dict(one.items()) == {k: joint[k] for k, _ in one.items()}
    # A trace row for each replay, on the checkout it replayed; nothing else written.
    assert await db.fetchval("select count(*) from h2s_checkout_traces") == traces_before + 2
    home_id = together[0]["checkout_id"]
    assert (await events(db, home_id))[-2:] == ["checkout.replayed", "checkout.replayed"]
    assert (await table_counts(db))["h2s_orders"] == 3


@pytest.mark.parametrize("key", [None, "key-1"], ids=["derived key", "client key"])
async def test_the_replay_call_together_decides_as_alone_in_every_state(db, key):
    """h2s_replay_checkouts looks a checkout up as h2s_begin_checkout does, with the list
    of states that hold no booking written in both: in each of the machine's states, with
    and without an answer, and with the other body under a client key, the two agree."""
    now = datetime.now(UTC)
    first = await begin(db, begin_args(checkout_body(), now, key=key))
    await link(db, first, now)
    later = now + timedelta(seconds=1)
    same = begin_args(checkout_body(), later, key=key)
    other = begin_args(checkout_body(email="bea@example.com"), later, key=key)
    calls = [same, other] if key else [same]
    seen = set()
    for state in STATES:
        for answered in (True, False):
            await db.execute(
                "update h2s_checkouts set state = $2,"
                " response_status = case when $3 then 201 end,"
                " response_body = case when $3 then response_body end"
                " where checkout_id = $1",
                first["checkout_id"],
                state,
                answered,
            )
            tx = db.transaction()
            await tx.start()
            alone = [await begin(db, replay_call(args)) for args in calls]
            await tx.rollback()
            tx = db.transaction()
            await tx.start()
            together = await checkouts.replay_checkouts(
                db, [checkouts.ReplayCall(a["keys"], a["window_start"], a["now"]) for a in calls]
            )
            await tx.rollback()
            for one, joint in zip(alone, together, strict=True):
                assert dict(one.items()) == {k: joint[k] for k, _ in one.items()}, state
                seen.add(one["outcome"])
    assert seen == ({"replayed", "absent", "key_reused"} if key else {"replayed", "absent"})
