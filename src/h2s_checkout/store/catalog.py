"""SQL for the service catalog."""

from __future__ import annotations

import asyncpg

from h2s_checkout.domain.cart import CatalogItem

_ACTIVE_ITEMS = """
select sku, name, description, unit_amount_cents, currency, max_quantity
from h2s_service_catalog
where active
order by sku
"""


async def active_items(conn: asyncpg.Connection) -> dict[str, CatalogItem]:
    rows = await conn.fetch(_ACTIVE_ITEMS)
    return {row["sku"]: CatalogItem(**dict(row)) for row in rows}
