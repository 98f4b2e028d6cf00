"""SQL for the dispatch portal: jobs with their order's status and booking, newest first, paged."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

# Each row: the job, its order's status, and who, where and what from the job's own
# order (one booking, one address), not from the recipient, whose row holds only the latest
# name and phone a customer gave.

# One order's job, whatever page it would be on.
_JOB_OF_ORDER = """
select j.job_id, j.order_id, o.status as order_status, j.recipient_id, j.sequence_id,
       j.step_id, j.status, j.due_at, j.created_at, j.payment_flag,
       o.customer ->> 'name' as customer_name, o.customer ->> 'phone' as customer_phone,
       o.customer -> 'address' as service_address, o.items as services
from h2s_dispatch_jobs j join h2s_orders o on o.order_id = j.order_id
where j.order_id = $1 and j.status = any($2::text[])
"""

# Newest first; (created_at, job_id) is the keyset, so a page never repeats or skips a job
# when new jobs arrive between two pages. One index range per status (status, created_at
# desc, job_id desc), each stopping after a page, then merged: one status's millions of
# rows are never sorted to find the newest fifty of two. The bounds are written so that
# they are index conditions in any plan (a missing one is its widest value), not filters.
_JOBS_PAGE = """
select j.job_id, j.order_id, o.status as order_status, j.recipient_id, j.sequence_id,
       j.step_id, j.status, j.due_at, j.created_at, j.payment_flag,
       o.customer ->> 'name' as customer_name, o.customer ->> 'phone' as customer_phone,
       o.customer -> 'address' as service_address, o.items as services
from unnest($1::text[]) as wanted(status)
cross join lateral (
    select * from h2s_dispatch_jobs j
    where j.status = wanted.status
      and j.created_at >= coalesce($2::timestamptz, '-infinity')
      and (j.created_at, j.job_id)
          < (coalesce($3::timestamptz, 'infinity'),
             coalesce($4::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
    order by j.created_at desc, j.job_id desc
    limit $5
) j
join h2s_orders o on o.order_id = j.order_id
order by j.created_at desc, j.job_id desc
limit $5
"""

# One customer's jobs: their own index, the statuses as a filter (a customer has few).
_JOBS_OF_RECIPIENT = """
select j.job_id, j.order_id, o.status as order_status, j.recipient_id, j.sequence_id,
       j.step_id, j.status, j.due_at, j.created_at, j.payment_flag,
       o.customer ->> 'name' as customer_name, o.customer ->> 'phone' as customer_phone,
       o.customer -> 'address' as service_address, o.items as services
from h2s_dispatch_jobs j join h2s_orders o on o.order_id = j.order_id
where j.recipient_id = $1 and j.status = any($2::text[])
  and j.created_at >= coalesce($3::timestamptz, '-infinity')
  and (j.created_at, j.job_id)
      < (coalesce($4::timestamptz, 'infinity'),
         coalesce($5::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
order by j.created_at desc, j.job_id desc
limit $6
"""


async def list_jobs(
    conn: asyncpg.Connection,
    *,
    statuses: tuple[str, ...],
    order_id: str | None = None,
    recipient_id: uuid.UUID | None = None,
    created_since: datetime | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to ``limit`` jobs in one of ``statuses``, after the keyset position ``after``."""
    after_created, after_job = after if after is not None else (None, None)
    if order_id is not None:
        rows = await conn.fetch(_JOB_OF_ORDER, order_id, list(statuses))
        return [
            r
            for r in rows
            if (recipient_id is None or r["recipient_id"] == recipient_id)
            and (created_since is None or r["created_at"] >= created_since)
            and (after is None or (r["created_at"], r["job_id"]) < after)
        ][:limit]
    if recipient_id is not None:
        return await conn.fetch(
            _JOBS_OF_RECIPIENT,
            recipient_id,
            list(statuses),
            created_since,
            after_created,
            after_job,
            limit,
        )
    return await conn.fetch(
        _JOBS_PAGE, list(statuses), created_since, after_created, after_job, limit
    )
