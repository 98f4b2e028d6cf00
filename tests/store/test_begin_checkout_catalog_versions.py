"""h2s_begin_checkout checks the catalog and area versions a cart was priced from, under
the lock a catalog change holds: stale is refused with nothing written or counted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from h2s_checkout.domain.cart import CatalogItem, cart_fingerprint, price_cart
from h2s_checkout.flows.begin_checkout import CheckoutFlow, CheckoutSettings, _claim_keys
from h2s_checkout.store import catalog, checkouts
from h2s_checkout.store.pool import init_connection
from h2s_checkout.store.traces import Step, transition_row
from support import checkout_body, command_for, most_waiting_for, table_counts

TV = CatalogItem("tv-mount", "TV wall mounting", "", 14900, "usd", 10, version=1)


def begin_args(
    body: dict[str, Any], now: datetime, item: CatalogItem = TV, area_version: int = 0
) -> dict[str, Any]:
    """The flow's own arguments for a cart priced from ``item`` and the area's version."""
    command = command_for(body)
    cart = price_cart(command.items, {item.sku: item})
    flow = CheckoutFlow(None, None, None, CheckoutSettings(public_base_url="http://shop.test"))  # type: ignore[arg-type]
    plan = flow._new_plan(command, cart, now)
    return {
        "window_start": now - timedelta(minutes=5),
        "now": now,
        "lease_until": now + timedelta(seconds=90),
        "new": CheckoutFlow._new_checkout(plan, command, cart, now, area_version),
        "steps": [Step("checkout.received", now, None, {}).row()],
        "transition": transition_row("queue_job", "pending_payment", "job_queued", now),
        "limits": [("address:203.0.113.9", 30)],
    }


async def begin(conn: asyncpg.Connection, body: dict[str, Any], **kwargs: Any) -> asyncpg.Record:
    now = datetime.now(UTC)
    command = command_for(body)
    keys = _claim_keys(command, cart_fingerprint(command.items))
    return await checkouts.begin_checkout(conn, keys, **begin_args(body, now, **kwargs))


async def test_current_versions_write_the_checkout(db):
    row = await begin(db, checkout_body())
    assert row["outcome"] == "created"


async def test_a_price_changed_since_the_cart_was_priced_writes_and_counts_nothing(db):
    await db.execute("update h2s_service_catalog set version = 2 where sku = 'tv-mount'")
    counts = await table_counts(db)

    row = await begin(db, checkout_body())

    assert row["outcome"] == "stale_catalog"
    assert await table_counts(db) == counts  # no checkout, order, job, trace or count


async def test_a_deactivated_item_or_another_area_is_stale(db):
    await db.execute("update h2s_service_catalog set active = false where sku = 'tv-mount'")
    assert (await begin(db, checkout_body()))["outcome"] == "stale_catalog"
    await db.execute("update h2s_service_catalog set active = true where sku = 'tv-mount'")
    await db.execute(
        "insert into h2s_service_area (version, areas, updated_by) values (1, '[]', 't')"
    )
    assert (await begin(db, checkout_body(), area_version=0))["outcome"] == "stale_catalog"
    assert (await begin(db, checkout_body(), area_version=1))["outcome"] == "created"


async def test_a_checkout_waits_for_a_change_in_progress_and_then_sees_it(db, database_url):
    changer = await asyncpg.connect(database_url)
    buyer = await asyncpg.connect(database_url)
    await init_connection(buyer)
    try:
        tx = changer.transaction()
        await tx.start()
        await catalog.lock_for_change(changer)
        await changer.execute(
            "update h2s_service_catalog set unit_amount_cents = 15900, version = 2 "
            "where sku = 'tv-mount'"
        )
        # Priced at version 1, which is still the committed one while the change runs.
        phase_one = asyncio.create_task(begin(buyer, checkout_body()))
        waiting = await most_waiting_for(changer, polls=10)
        await tx.commit()
        row = await asyncio.wait_for(phase_one, timeout=10)
    finally:
        await changer.close()
        await buyer.close()

    assert waiting == 1  # phase 1 queued behind the change rather than writing at 14900
    assert row["outcome"] == "stale_catalog"
    assert await db.fetchval("select count(*) from h2s_orders") == 0
