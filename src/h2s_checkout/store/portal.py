"""SQL for the dispatch portal: jobs with their order's status and booking, newest first, paged."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

# Newest first; (created_at, job_id) is the keyset, so a page never repeats or skips a job
# when new jobs arrive between two pages. Each filter is skipped when its parameter is null.
# Who, where and what come from the job's own order (one booking, one address), not from
# the recipient, whose row holds only the latest name and phone a customer gave.
_LIST_JOBS = """
select j.job_id, j.order_id, o.status as order_status, j.recipient_id, j.sequence_id,
       j.step_id, j.status, j.due_at, j.created_at,
       o.customer ->> 'name' as customer_name, o.customer ->> 'phone' as customer_phone,
       o.customer -> 'address' as service_address, o.items as services
from h2s_dispatch_jobs j
join h2s_orders o on o.order_id = j.order_id
where j.status = any($1::text[])
  and ($2::text is null or j.order_id = $2::text)
  and ($3::uuid is null or j.recipient_id = $3::uuid)
  and ($4::timestamptz is null or j.created_at >= $4::timestamptz)
  and ($5::timestamptz is null or (j.created_at, j.job_id) < ($5::timestamptz, $6::uuid))
order by j.created_at desc, j.job_id desc
limit $7
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
    return await conn.fetch(
        _LIST_JOBS,
        list(statuses),
        order_id,
        recipient_id,
        created_since,
        after_created,
        after_job,
        limit,
    )
