"""SQL for limit counters (h2s_rate_counters): failed sign-ins, and the reaper's purge.

New checkouts are counted inside ``h2s_begin_checkout`` (store/checkouts.py), in phase 1's
own round trip.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

# One more attempt in the window, unless the window is full: the upsert's row lock makes
# concurrent attempts on every replica queue, so no more than `limit` are ever let
# through. No row returned: the window is full.
_TAKE_ATTEMPT = """
insert into h2s_rate_counters as c (bucket, window_start, hits)
values ($1, $2, 1)
on conflict (bucket, window_start) do update set hits = c.hits + 1
where c.hits < $3
returning hits
"""

# An attempt that turned out not to be a failure is given back.
_GIVE_BACK = """
update h2s_rate_counters set hits = hits - 1
where bucket = $1 and window_start = $2 and hits > 0
"""

_PURGE = "delete from h2s_rate_counters where window_start < $1"


async def take_attempt(
    conn: asyncpg.Connection, bucket: str, window_start: datetime, limit: int
) -> bool:
    """True if the attempt fits in the window (and is now counted)."""
    return await conn.fetchval(_TAKE_ATTEMPT, bucket, window_start, limit) is not None


async def give_back_attempt(conn: asyncpg.Connection, bucket: str, window_start: datetime) -> None:
    await conn.execute(_GIVE_BACK, bucket, window_start)


async def purge_windows_before(conn: asyncpg.Connection, cutoff: datetime) -> int:
    result: str = await conn.execute(_PURGE, cutoff)
    return int(result.split()[-1])
