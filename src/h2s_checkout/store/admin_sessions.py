"""SQL for the debug page's sign-in sessions (h2s_admin_sessions), by the session id's hash."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

# A live session's data; with renew_for, its idle expiry moves to now + renew_for, at most
# once a minute (a page view does not write every time).
_GET = """
with live as (
    select session_hash, data, expires_at from h2s_admin_sessions
    where session_hash = $1 and expires_at > $2
), renewed as (
    update h2s_admin_sessions s set expires_at = $2 + $3::interval
    from live l
    where $3::interval is not null and s.session_hash = l.session_hash
      and l.expires_at < $2 + $3::interval - interval '1 minute'
)
select data from live
"""

_SET = """
insert into h2s_admin_sessions (session_hash, key_hash, data, created_at, expires_at)
values ($1, $2, $3, $4, $5)
on conflict (session_hash) do update
    set key_hash = excluded.key_hash, data = excluded.data, expires_at = excluded.expires_at
"""

_DELETE = "delete from h2s_admin_sessions where session_hash = $1"
_DELETE_ALL = "delete from h2s_admin_sessions"
_EXPIRES_AT = """
select expires_at from h2s_admin_sessions where session_hash = $1 and expires_at > $2
"""
_PURGE = "delete from h2s_admin_sessions where expires_at <= $1"


async def get_session(
    conn: asyncpg.Connection, session_hash: bytes, now: datetime, renew_for: timedelta | None
) -> bytes | None:
    data: bytes | None = await conn.fetchval(_GET, session_hash, now, renew_for)
    return data


async def set_session(
    conn: asyncpg.Connection,
    session_hash: bytes,
    *,
    key_hash: bytes | None,
    data: bytes,
    now: datetime,
    expires_at: datetime,
) -> None:
    await conn.execute(_SET, session_hash, key_hash, data, now, expires_at)


async def delete_session(conn: asyncpg.Connection, session_hash: bytes) -> None:
    await conn.execute(_DELETE, session_hash)


async def delete_all_sessions(conn: asyncpg.Connection) -> None:
    await conn.execute(_DELETE_ALL)


async def session_expires_at(
    conn: asyncpg.Connection, session_hash: bytes, now: datetime
) -> datetime | None:
    expires_at: datetime | None = await conn.fetchval(_EXPIRES_AT, session_hash, now)
    return expires_at


async def purge_expired_sessions(conn: asyncpg.Connection, now: datetime) -> int:
    result: str = await conn.execute(_PURGE, now)
    return int(result.split()[-1])
