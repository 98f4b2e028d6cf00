"""SQL for `h2s-checkout doctor`: each query counts rows that should not exist.

Every query answers ``n`` (the count) and ``examples`` (up to five ids, newest first) so
that the person reading the report can start from a real row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

# The order/job checks cost in proportion to the rows of their window, not to the tables.
# Phase 1 writes an order and its job in one transaction, so both carry the same
# created_at: each check first hashes the other table's rows of the same window (an hour
# wider) and keeps only the rows with no partner there, almost always none; only those few
# are then looked up by index in the whole table, so the answer is exact whatever the
# timestamps say. An index probe per row of the window (NOT EXISTS alone) cost about 8 µs
# per row per check: 1.2 s for the three with 50,000 orders in 48 hours; as LEFT JOIN ...
# IS NULL, PostgreSQL hashed all of h2s_dispatch_jobs (370 ms each with a million stored).
# Both CTEs are MATERIALIZED: the first anti join is then a hash join over the window, and
# only its few leftovers are looked up by index (left to itself, the planner joins the
# whole tables first). OFFSET 0 keeps that lookup a subplan run per leftover row: as a
# join, the planner, expecting many leftovers, would scan the whole table for a few.


def _without_partner(table: str, example: str, partner: str, partner_key: str) -> str:
    """Rows of ``table`` in the window whose order id no row of ``partner`` carries (in
    ``partner_key``): the window's hash anti join, then an index lookup per leftover.
    Called only below, with this module's own table and column names."""
    return f"""
with near as materialized (
    select {partner_key} as order_id from {partner}
    where created_at > $1::timestamptz - interval '1 hour'
), unmatched as materialized (
    select t.order_id, t.created_at, {example} as example from {table} t
    where t.created_at > $1
      and not exists (select 1 from near where near.order_id = t.order_id)
)
select count(*) as n, (array_agg(u.example order by u.created_at desc))[1:5] as examples
from unmatched u
where not exists (
    select 1 from {partner} p where p.{partner_key} = u.order_id offset 0)
"""  # noqa: S608


# Joined on the real column.
ORDERS_WITHOUT_JOBS = _without_partner("h2s_orders", "t.order_id", "h2s_dispatch_jobs", "order_id")
# The seed's own verification query: the job found through its metadata's order id.
ORDERS_WITHOUT_JOBS_BY_METADATA = _without_partner(
    "h2s_orders", "t.order_id", "h2s_dispatch_jobs", "metadata->>'order_id'"
)
JOBS_WITHOUT_ORDERS = _without_partner(
    "h2s_dispatch_jobs", "t.job_id::text", "h2s_orders", "order_id"
)

# The reconciler resumes or cleans these within minutes; one still here is stuck.
STUCK_CHECKOUTS = """
select count(*) as n,
       (array_agg(checkout_id::text order by updated_at desc))[1:5] as examples
from h2s_checkouts
where state in ('pending_payment', 'job_queued', 'failed') and updated_at < $1
"""

# Stripe sends checkout.session.expired at expires_at; the reconciler asks after 2 minutes.
SESSIONS_PAST_EXPIRY = """
select count(*) as n,
       (array_agg(checkout_id::text order by updated_at desc))[1:5] as examples
from h2s_checkouts
where state = 'session_created' and h2s_session_expires_at(session_request) < $1
"""

# One checkout may be recorded more than once (a completed event, then an async one). One
# whose late payment was refunded is settled.
PAID_AFTER_CLEANUP = """
select count(distinct f.checkout_id) as n,
       (array_agg(distinct f.checkout_id::text))[1:5] as examples
from h2s_checkout_failures f
where f.error_code = 'paid_after_cleanup' and f.at > $1
  and not exists (
      select 1 from h2s_refunds r
      where r.checkout_id = f.checkout_id and r.cause = 'late_payment'
        and r.status = 'succeeded')
"""

# Card holds (pay on completion) that lapse before $1 (now + 24 h): complete the job, or
# call the customer, before the money can no longer be taken.
HOLDS_LAPSING = """
select count(*) as n,
       (array_agg(order_id order by authorization_expires_at))[1:5] as examples
from h2s_orders
where status = 'authorized' and authorization_expires_at < $1
"""

# Holds that lapsed before the job was done: nothing can be charged; the job is flagged.
AUTHORIZATIONS_EXPIRED = """
select count(*) as n, (array_agg(order_id order by updated_at desc))[1:5] as examples
from h2s_checkouts
where state = 'authorization_expired' and updated_at > $1
"""

# A capture owed that the reconciler did not get the provider to confirm.
CAPTURES_NOT_SETTLED = """
select count(*) as n, (array_agg(order_id order by updated_at desc))[1:5] as examples
from h2s_captures
where status = 'requested' and updated_at < $1
"""

# The provider refused or failed a refund: the money is still with the shop.
REFUNDS_FAILED = """
select count(*) as n, (array_agg(order_id order by updated_at desc))[1:5] as examples
from h2s_checkouts
where state = 'refund_failed' and updated_at > $1
"""

# Sent or owed, and not settled by the provider since: the reconciler sends or asks again
# within minutes, so one still open is stuck.
REFUNDS_NOT_SETTLED = """
select count(*) as n, (array_agg(order_id order by updated_at desc))[1:5] as examples
from h2s_refunds
where status in ('requested', 'pending', 'requires_action') and updated_at < $1
"""

# Cleanup could not make the provider end the session; the reconciler retries.
UNSETTLED_CLEANUPS = """
select count(*) as n,
       (array_agg(checkout_id::text order by updated_at desc))[1:5] as examples
from h2s_checkouts
where needs_settlement and updated_at < $1
"""

# Events an enabled subscriber should have by now and none has: the delivery loop is not
# running, or every enabled endpoint keeps failing. Bounds: older than $1, newer than $2.
UNDELIVERED_EVENTS = """
select count(*) as n, (array_agg(e.event_id order by e.created_at desc))[1:5] as examples
from h2s_events e
where e.created_at < $1 and e.created_at > $2
  and exists (
      select 1 from h2s_event_deliveries d
      join h2s_event_endpoints p on p.endpoint_id = d.endpoint_id and p.status = 'enabled'
      where d.event_id = e.event_id)
  and not exists (
      select 1 from h2s_event_deliveries d
      join h2s_event_endpoints p on p.endpoint_id = d.endpoint_id and p.status = 'enabled'
      where d.event_id = e.event_id and d.status = 'delivered')
"""

ORDERS_WITH_SESSIONS = """
select order_id, session_id from h2s_orders
where session_id is not null and created_at > $1
order by created_at desc
"""

ORDERS_BY_ID = """
select o.order_id, o.status, c.state,
       exists (select 1 from h2s_refunds r
               where r.order_id = o.order_id and r.status = 'succeeded') as refunded
from h2s_orders o
join h2s_checkouts c on c.checkout_id = o.checkout_id
where o.order_id = any($1::text[])
"""


class Queryable(Protocol):
    """An asyncpg connection or pool."""

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


async def count(db: Queryable, query: str, *bounds: datetime) -> tuple[int, list[str]]:
    """One of the counting queries above, with its time bounds."""
    row = await db.fetchrow(query, *bounds)
    return int(row["n"]), list(row["examples"] or [])


async def orders_with_sessions(db: Queryable, since: datetime) -> list[tuple[str, str]]:
    return [(r["order_id"], r["session_id"]) for r in await db.fetch(ORDERS_WITH_SESSIONS, since)]


async def orders_by_id(db: Queryable, order_ids: list[str]) -> dict[str, tuple[str, str, bool]]:
    """Order id -> (order status, checkout state, refunded), for the ids that exist."""
    rows = await db.fetch(ORDERS_BY_ID, order_ids)
    return {r["order_id"]: (r["status"], r["state"], r["refunded"]) for r in rows}
