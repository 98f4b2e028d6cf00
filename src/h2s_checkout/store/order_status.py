"""SQL for the customer's return pages: an order's status, by its Stripe session or its id."""

from __future__ import annotations

import asyncpg

# By the session id Stripe put in the success URL: only the payer has it, so the order's
# services and total may be shown. Nothing about the customer is read.
_BY_SESSION = """
select order_id, status, items, total_cents, currency
from h2s_orders
where session_id = $1
"""

# By an order id alone (guessable, shared in emails and tickets): its status and no more.
_STATUS_BY_ORDER = """
select order_id, status
from h2s_orders
where order_id = $1
"""


async def order_by_session(conn: asyncpg.Connection, session_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_BY_SESSION, session_id)


async def status_by_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_STATUS_BY_ORDER, order_id)
