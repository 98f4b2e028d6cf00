"""SQL for `h2s-checkout doctor`: each query counts rows that should not exist.

Every query answers ``n`` (the count) and ``examples`` (up to five ids, newest first) so
that the person reading the report can start from a real row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

# The joins are written as NOT EXISTS: an anti join that probes the other table's index for
# each row of the window. As LEFT JOIN ... IS NULL on a column outside the join clause,
# PostgreSQL hashed all of h2s_dispatch_jobs instead (a full scan: 370 ms of the doctor's
# 1.6 s with a million checkouts stored, 100 ms as written here).

# Joined on the real column: phase 1 writes the order and its job in one transaction.
ORDERS_WITHOUT_JOBS = """
select count(*) as n, (array_agg(o.order_id order by o.created_at desc))[1:5] as examples
from h2s_orders o
where o.created_at > $1
  and not exists (select 1 from h2s_dispatch_jobs j where j.order_id = o.order_id)
"""

# The seed's own verification query: the job found through its metadata's order id.
ORDERS_WITHOUT_JOBS_BY_METADATA = """
select count(*) as n, (array_agg(o.order_id order by o.created_at desc))[1:5] as examples
from h2s_orders o
where o.created_at > $1
  and not exists (
      select 1 from h2s_dispatch_jobs j where j.metadata->>'order_id' = o.order_id)
"""

JOBS_WITHOUT_ORDERS = """
select count(*) as n, (array_agg(j.job_id::text order by j.created_at desc))[1:5] as examples
from h2s_dispatch_jobs j
where j.created_at > $1
  and not exists (select 1 from h2s_orders o where o.order_id = j.order_id)
"""

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
where state = 'session_created' and (session_request->>'expires_at')::timestamptz < $1
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


async def orders_by_id(
    db: Queryable, order_ids: list[str]
) -> dict[str, tuple[str, str, bool]]:
    """Order id -> (order status, checkout state, refunded), for the ids that exist."""
    rows = await db.fetch(ORDERS_BY_ID, order_ids)
    return {r["order_id"]: (r["status"], r["state"], r["refunded"]) for r in rows}
