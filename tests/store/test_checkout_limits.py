"""h2s_begin_checkout's limits: checked and counted on the create path, in phase 1's call."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from h2s_checkout.domain.cart import CatalogItem, cart_fingerprint, price_cart
from h2s_checkout.domain.limits import CheckoutLimits
from h2s_checkout.flows.begin_checkout import CheckoutFlow, CheckoutSettings, _claim_keys
from h2s_checkout.store import checkouts
from h2s_checkout.store.pool import init_connection
from h2s_checkout.store.traces import Step, transition_row
from support import checkout_body, command_for, table_counts

CATALOG = {
    "tv-mount": CatalogItem("tv-mount", "TV wall mounting", "", 14900, "usd", 10),
    "smart-lock": CatalogItem("smart-lock", "Smart lock install", "", 12900, "usd", 10),
}
LIMITS = CheckoutLimits(per_address=3, per_email=2)
# A minute's start, so the window's end is a known number of seconds away.
MINUTE = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def begin_args(
    body: dict[str, Any],
    now: datetime,
    *,
    address: str | None = "203.0.113.7",
    limits: CheckoutLimits = LIMITS,
    key: str | None = None,
) -> dict[str, Any]:
    """The arguments the flow passes for a request, built by the flow's own code."""
    command = command_for(body, key)
    cart = price_cart(command.items, CATALOG)
    flow = CheckoutFlow(None, None, None, CheckoutSettings(public_base_url="http://shop.test"))  # type: ignore[arg-type]
    plan = flow._new_plan(command, cart, now)
    return {
        "keys": _claim_keys(command, cart_fingerprint(command.items)),
        "window_start": now - timedelta(minutes=5),
        "now": now,
        "lease_until": now + timedelta(seconds=90),
        "new": CheckoutFlow._new_checkout(plan, command, cart, now),
        "steps": [Step("checkout.received", now, None, {}).row()],
        "transition": transition_row("queue_job", "pending_payment", "job_queued", now),
        "limits": limits.buckets(address, body["customer"]["email"].strip().lower()),
    }


async def begin(conn, args: dict[str, Any]) -> asyncpg.Record:
    return await checkouts.begin_checkout(
        conn, args["keys"], **{k: v for k, v in args.items() if k != "keys"}
    )


async def link(db, row, at: datetime) -> None:
    await checkouts.link_session(
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


async def counters(db) -> dict[str, int]:
    rows = await db.fetch("select bucket, hits from h2s_rate_counters")
    return {r["bucket"].split(":")[0]: r["hits"] for r in rows}


async def test_a_new_checkout_over_the_address_limit_is_refused_and_writes_nothing(db):
    now = MINUTE + timedelta(seconds=20)
    for n in range(3):
        row = await begin(db, begin_args(checkout_body(email=f"c{n}@example.com"), now))
        assert row["outcome"] == "created"
    before = await table_counts(db)

    refused = await begin(db, begin_args(checkout_body(email="c9@example.com"), now))

    assert refused["outcome"] == "rate_limited"
    assert refused["limited_by"] == "address"
    assert refused["retry_after_s"] == 40  # the seconds left in the minute
    assert refused["checkout_id"] is None
    assert await table_counts(db) == before


async def test_a_new_checkout_over_the_email_limit_is_refused_from_any_address(db):
    now = MINUTE + timedelta(seconds=59, milliseconds=500)
    for n in (1, 2):  # two different bookings by one customer, from two addresses
        items = [{"sku": "tv-mount", "quantity": n}]
        row = await begin(
            db, begin_args(checkout_body(items=items), now, address=f"198.51.100.{n}")
        )
        assert row["outcome"] == "created"

    third = [{"sku": "tv-mount", "quantity": 3}]
    refused = await begin(db, begin_args(checkout_body(items=third), now, address="198.51.100.3"))

    assert (refused["outcome"], refused["limited_by"]) == ("rate_limited", "email")
    assert refused["retry_after_s"] == 1  # never 0: half a second left is still a wait


async def test_replays_resumptions_and_conflicts_are_neither_refused_nor_counted(db):
    now = MINUTE
    answered = await begin(db, begin_args(checkout_body(email="a@example.com"), now))
    await link(db, answered, now)
    running = await begin(db, begin_args(checkout_body(email="b@example.com"), now))
    await begin(db, begin_args(checkout_body(email="c@example.com"), now))
    assert await counters(db) == {"address": 3, "email": 1}

    replay = await begin(db, begin_args(checkout_body(email="a@example.com"), now))
    conflict = await begin(db, begin_args(checkout_body(email="b@example.com"), now))
    resumed = await begin(
        db, begin_args(checkout_body(email="b@example.com"), now + timedelta(seconds=91))
    )

    assert replay["outcome"] == "replayed"
    assert conflict["outcome"] == "conflict"
    assert (resumed["outcome"], resumed["checkout_id"]) == ("resumed", running["checkout_id"])
    # Still three in this minute's window: none of the retries counted.
    rows = await db.fetch("select hits from h2s_rate_counters where window_start = $1", MINUTE)
    assert sorted(r["hits"] for r in rows) == [1, 1, 1, 3]


async def test_the_next_window_has_room_again(db):
    for n in range(3):
        await begin(db, begin_args(checkout_body(email=f"c{n}@example.com"), MINUTE))
    assert (await begin(db, begin_args(checkout_body(email="x@example.com"), MINUTE)))[
        "outcome"
    ] == "rate_limited"

    later = await begin(
        db, begin_args(checkout_body(email="x@example.com"), MINUTE + timedelta(minutes=1))
    )

    assert later["outcome"] == "created"


async def test_without_limits_nothing_is_counted(db):
    args = begin_args(checkout_body(), MINUTE, limits=CheckoutLimits())
    assert args["limits"] == []
    assert (await begin(db, args))["outcome"] == "created"
    assert await counters(db) == {}


async def test_racing_creations_from_one_address_never_pass_the_limit(database_url, db):
    """Ten different checkouts from one address at once, on ten connections (as from
    several replicas): the limit's lock makes exactly three of them new checkouts."""
    conns = [await asyncpg.connect(database_url) for _ in range(10)]
    try:
        for conn in conns:
            await init_connection(conn)
        rows = await asyncio.gather(
            *(
                begin(conn, begin_args(checkout_body(email=f"r{n}@example.com"), MINUTE))
                for n, conn in enumerate(conns)
            )
        )
    finally:
        for conn in conns:
            await conn.close()
    assert sorted(r["outcome"] for r in rows) == ["created"] * 3 + ["rate_limited"] * 7
    assert (await table_counts(db))["h2s_orders"] == 3
    assert (await counters(db))["address"] == 3
