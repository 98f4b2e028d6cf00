"""The shop's catalog and service area as staff change them: add an item, change one
(price, fields, deactivate, bring back), list them, read an item's history; read and set
the service area.

Each change is one transaction: the row locked, the If-Match checked against it, the
catalog's lock taken (store/catalog.py: checkouts pricing now commit first, the next ones
see the change), the row, its history (who, before, after) and the event for subscribers
written together. Bad input is refused before anything is written. The replica that made
a change drops its cached catalog at once; every other finds out at its next checkout
(phase 1 checks the versions) or by its TTL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from h2s_checkout.domain.cart import CatalogItem
from h2s_checkout.domain.catalog import (
    ItemChange,
    action_of,
    changed,
    check_if_match,
    check_item,
    fields_of,
    item_etag,
)
from h2s_checkout.domain.errors import NotFound, SkuTaken
from h2s_checkout.domain.events import (
    CATALOG_ITEM_CREATED,
    CATALOG_ITEM_UPDATED,
    SERVICE_AREA_UPDATED,
)
from h2s_checkout.domain.service_area import ServiceArea, areas_from
from h2s_checkout.flows.catalog_cache import CatalogCache
from h2s_checkout.observability.logging import get_logger
from h2s_checkout.store import catalog as sql
from h2s_checkout.store.pool import connection

log = get_logger(__name__)

HISTORY_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a history: who changed what, when, before and after."""

    version: int
    action: str
    actor: str
    at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Change:
        return cls(
            version=row["version"],
            action=row["action"],
            actor=row["actor"],
            at=row["at"],
            before=row["before"],
            after=row["after"],
        )


@dataclass(frozen=True, slots=True)
class AreaView:
    area: ServiceArea
    updated_at: datetime | None
    updated_by: str | None


class CatalogAdmin:
    """The use cases behind the catalog's routes and the `catalog` / `service-area`
    commands; ``cache`` is this replica's, dropped after each change it makes."""

    def __init__(self, pool: asyncpg.Pool, cache: CatalogCache | None = None) -> None:
        self._pool = pool
        self._cache = cache

    async def list_items(self, *, include_inactive: bool) -> list[CatalogItem]:
        async with connection(self._pool) as conn:
            return await sql.items(conn, include_inactive=include_inactive)

    async def get_item(self, sku: str) -> CatalogItem:
        async with connection(self._pool) as conn:
            found = await sql.item(conn, sku)
        if found is None:
            raise NotFound(f"no catalog item {sku!r}", sku=sku)
        return found

    async def create_item(self, new: CatalogItem, *, actor: str) -> CatalogItem:
        check_item(new)
        new = CatalogItem(
            sku=new.sku,
            name=new.name,
            description=new.description,
            unit_amount_cents=new.unit_amount_cents,
            currency=new.currency,
            max_quantity=new.max_quantity,
            version=1,
            active=True,
        )
        async with connection(self._pool) as conn, conn.transaction():
            await sql.lock_for_change(conn)
            written = await sql.insert_item(conn, new)
            if written is None:
                raise SkuTaken(
                    f"a catalog item {new.sku!r} exists (deactivated items too): change it "
                    "with PATCH instead",
                    sku=new.sku,
                )
            await sql.record_item_change(conn, None, written, action="created", actor=actor)
            await sql.enqueue_catalog_event(
                conn, CATALOG_ITEM_CREATED, {"item": fields_of(written)}, written.version
            )
        self._changed()
        log.info("catalog.item_created", sku=written.sku, version=written.version)
        return written

    async def change_item(
        self, sku: str, change: ItemChange, *, if_match: str | None, actor: str
    ) -> CatalogItem:
        async with connection(self._pool) as conn, conn.transaction():
            before = await sql.item(conn, sku, for_update=True)
            if before is None:
                raise NotFound(f"no catalog item {sku!r}", sku=sku)
            check_if_match(if_match, item_etag(before))
            after = changed(before, change)
            if after is before:
                return before  # nothing new: no version, no history, no event
            await sql.lock_for_change(conn)
            written = await sql.update_item(conn, after)
            action = action_of(before, written)
            await sql.record_item_change(conn, before, written, action=action, actor=actor)
            await sql.enqueue_catalog_event(
                conn,
                CATALOG_ITEM_UPDATED,
                {"item": fields_of(written), "previous": fields_of(before)},
                written.version,
            )
        self._changed()
        log.info("catalog.item_changed", sku=sku, version=written.version, action=action)
        return written

    async def item_history(self, sku: str, *, limit: int = HISTORY_LIMIT) -> list[Change]:
        async with connection(self._pool) as conn:
            if await sql.item(conn, sku) is None:
                raise NotFound(f"no catalog item {sku!r}", sku=sku)
            rows = await sql.item_history(conn, sku, limit)
        return [Change.from_row(r) for r in rows]

    async def service_area(self) -> AreaView:
        async with connection(self._pool) as conn:
            area, row = await sql.service_area(conn)
        return AreaView(
            area,
            None if row is None else row["updated_at"],
            None if row is None else row["updated_by"],
        )

    async def set_service_area(
        self, raw_areas: list[dict[str, Any]], *, if_match: str | None, actor: str
    ) -> AreaView:
        areas = areas_from(raw_areas)  # bad input refused before the transaction
        async with connection(self._pool) as conn, conn.transaction():
            # The lock first: an area never set has no row to lock, and two first PUTs
            # must not both write version 1.
            await sql.lock_for_change(conn)
            before, row = await sql.service_area(conn, for_update=True)
            check_if_match(if_match, before.etag)
            if areas == before.areas and row is not None:
                return AreaView(before, row["updated_at"], row["updated_by"])
            after = ServiceArea(areas=areas, version=before.version + 1)
            row = await sql.put_service_area(conn, after, actor=actor)
            await sql.record_area_change(conn, before, after, actor=actor)
            await sql.enqueue_catalog_event(
                conn,
                SERVICE_AREA_UPDATED,
                {"service_area": {"areas": after.as_json()}},
                after.version,
            )
        self._changed()
        log.info("catalog.service_area_changed", version=after.version)
        return AreaView(after, row["updated_at"], row["updated_by"])

    async def area_history(self, *, limit: int = HISTORY_LIMIT) -> list[Change]:
        async with connection(self._pool) as conn:
            rows = await sql.area_history(conn, limit)
        return [Change.from_row(r) for r in rows]

    def _changed(self) -> None:
        if self._cache is not None:
            self._cache.invalidate()
