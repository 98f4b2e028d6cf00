"""SQL for the service catalog, the service area and their history.

A change of an item or of the area takes the catalog's lock exclusively
(``lock_for_change``) before it writes; ``h2s_begin_checkout`` takes it shared while it
checks the versions a cart was priced from
(db/migrations/20261207000102_h2s_begin_checkout_exact_price.sql), so a checkout commits
either before a change or after it, never at a price the change has just replaced.
Catalog events go out through ``h2s_enqueue_catalog_event``
(db/migrations/20261207000101_catalog_versions_history_service_area.sql).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from h2s_checkout.domain.cart import CatalogItem
from h2s_checkout.domain.catalog import fields_of, item_from
from h2s_checkout.domain.service_area import ServiceArea, area_from_row

# What a worker caches, in one round trip: the active items and the area.
_SNAPSHOT = """
select coalesce((select jsonb_agg(to_jsonb(c) order by c.sku)
                 from (select sku, name, description, unit_amount_cents, currency,
                              max_quantity, version, active
                       from h2s_service_catalog where active) c), '[]'::jsonb) as items,
       (select to_jsonb(a) from (select version, areas from h2s_service_area) a) as area
"""

_ITEMS = """
select sku, name, description, unit_amount_cents, currency, max_quantity, version, active
from h2s_service_catalog
where active or $1
order by sku
"""

_ITEM = """
select sku, name, description, unit_amount_cents, currency, max_quantity, version, active
from h2s_service_catalog where sku = $1
"""
_ITEM_FOR_UPDATE = """
select sku, name, description, unit_amount_cents, currency, max_quantity, version, active
from h2s_service_catalog where sku = $1
for update
"""

# The key h2s_begin_checkout takes shared (one bigint, as its other keys).
_LOCK_FOR_CHANGE = "select pg_advisory_xact_lock(hashtextextended('h2s-catalog', 0))"

_INSERT_ITEM = """
insert into h2s_service_catalog (
    sku, name, description, unit_amount_cents, currency, max_quantity, version, active)
values ($1, $2, $3, $4, $5, $6, $7, $8)
on conflict (sku) do nothing
returning sku, name, description, unit_amount_cents, currency, max_quantity, version, active
"""

_UPDATE_ITEM = """
update h2s_service_catalog
set name = $2, description = $3, unit_amount_cents = $4, currency = $5, max_quantity = $6,
    active = $7, version = $8, updated_at = now()
where sku = $1
returning sku, name, description, unit_amount_cents, currency, max_quantity, version, active
"""

_INSERT_HISTORY = """
insert into h2s_catalog_history (subject, sku, version, action, actor, before, after)
values ($1, $2, $3, $4, $5, $6, $7)
"""

_ITEM_HISTORY = """
select change_id, version, action, actor, at, before, after
from h2s_catalog_history
where subject = 'item' and sku = $1
order by change_id desc
limit $2
"""

_AREA = "select version, areas, updated_at, updated_by from h2s_service_area"
_AREA_FOR_UPDATE = "select version, areas, updated_at, updated_by from h2s_service_area for update"

_PUT_AREA = """
insert into h2s_service_area as a (singleton, version, areas, updated_by)
values (true, $1, $2, $3)
on conflict (singleton) do update
set version = excluded.version, areas = excluded.areas, updated_by = excluded.updated_by,
    updated_at = now()
returning version, areas, updated_at, updated_by
"""

_AREA_HISTORY = """
select change_id, version, action, actor, at, before, after
from h2s_catalog_history
where subject = 'service_area'
order by change_id desc
limit $1
"""

_ENQUEUE_CATALOG_EVENT = "select h2s_enqueue_catalog_event($1, $2, $3)"


async def snapshot(conn: asyncpg.Connection) -> tuple[dict[str, CatalogItem], ServiceArea]:
    """The active items by sku and the service area, as a worker caches them."""
    row = await conn.fetchrow(_SNAPSHOT)
    items = {i["sku"]: item_from(i) for i in row["items"]}
    return items, area_from_row(row["area"])


async def active_items(conn: asyncpg.Connection) -> dict[str, CatalogItem]:
    items, _ = await snapshot(conn)
    return items


async def items(conn: asyncpg.Connection, *, include_inactive: bool) -> list[CatalogItem]:
    return [item_from(r) for r in await conn.fetch(_ITEMS, include_inactive)]


async def item(
    conn: asyncpg.Connection, sku: str, *, for_update: bool = False
) -> CatalogItem | None:
    row = await conn.fetchrow(_ITEM_FOR_UPDATE if for_update else _ITEM, sku)
    return None if row is None else item_from(row)


async def lock_for_change(conn: asyncpg.Connection) -> None:
    """Wait for the checkouts checking prices now to commit; hold them off to our commit."""
    await conn.execute(_LOCK_FOR_CHANGE)


async def insert_item(conn: asyncpg.Connection, new: CatalogItem) -> CatalogItem | None:
    """The item written, or None when its sku is taken."""
    row = await conn.fetchrow(
        _INSERT_ITEM,
        new.sku,
        new.name,
        new.description,
        new.unit_amount_cents,
        new.currency,
        new.max_quantity,
        new.version,
        new.active,
    )
    return None if row is None else item_from(row)


async def update_item(conn: asyncpg.Connection, after: CatalogItem) -> CatalogItem:
    row = await conn.fetchrow(
        _UPDATE_ITEM,
        after.sku,
        after.name,
        after.description,
        after.unit_amount_cents,
        after.currency,
        after.max_quantity,
        after.active,
        after.version,
    )
    return item_from(row)


async def record_item_change(
    conn: asyncpg.Connection,
    before: CatalogItem | None,
    after: CatalogItem,
    *,
    action: str,
    actor: str,
) -> None:
    await conn.execute(
        _INSERT_HISTORY,
        "item",
        after.sku,
        after.version,
        action,
        actor,
        None if before is None else fields_of(before),
        fields_of(after),
    )


async def item_history(conn: asyncpg.Connection, sku: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(_ITEM_HISTORY, sku, limit)


async def service_area(
    conn: asyncpg.Connection, *, for_update: bool = False
) -> tuple[ServiceArea, asyncpg.Record | None]:
    """The area, and its row (None when never set: everywhere, version 0)."""
    row = await conn.fetchrow(_AREA_FOR_UPDATE if for_update else _AREA)
    return area_from_row(row), row


async def put_service_area(
    conn: asyncpg.Connection, after: ServiceArea, *, actor: str
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(_PUT_AREA, after.version, after.as_json(), actor)
    return row


async def record_area_change(
    conn: asyncpg.Connection, before: ServiceArea, after: ServiceArea, *, actor: str
) -> None:
    await conn.execute(
        _INSERT_HISTORY,
        "service_area",
        None,
        after.version,
        "updated",
        actor,
        {"areas": before.as_json()},
        {"areas": after.as_json()},
    )


async def area_history(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(_AREA_HISTORY, limit)


async def enqueue_catalog_event(
    conn: asyncpg.Connection, event_type: str, data: dict[str, Any], sequence: int
) -> str | None:
    """One catalog event in the caller's transaction; None when nobody subscribes to it."""
    event_id: str | None = await conn.fetchval(_ENQUEUE_CATALOG_EVENT, event_type, data, sequence)
    return event_id
