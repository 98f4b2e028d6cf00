"""SQL for the customer's return pages: an order's state, by its Stripe session or its id.

What a page says comes from the checkout's state: the machine's states are the ones that
every page has words for (api/customer_words.py), where the order's status has fewer."""

from __future__ import annotations

import asyncpg

# By the session id Stripe put in the success URL: only the payer has it, so the order's
# services and total may be shown. Nothing about the customer is read.
_BY_SESSION = """
select o.order_id, c.state, o.items, o.total_cents, o.currency
from h2s_orders o
join h2s_checkouts c on c.checkout_id = o.checkout_id
where o.session_id = $1
"""

# By an order id alone (guessable, shared in emails and tickets): its status and no more.
_STATUS_BY_ORDER = """
select o.order_id, c.state
from h2s_orders o
join h2s_checkouts c on c.checkout_id = o.checkout_id
where o.order_id = $1
"""


async def order_by_session(conn: asyncpg.Connection, session_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_BY_SESSION, session_id)


async def status_by_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_STATUS_BY_ORDER, order_id)
