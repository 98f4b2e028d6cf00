"""SQL for API keys (h2s_api_keys): create, list, find by hash, revoke."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

_INSERT = """
insert into h2s_api_keys (
    key_id, name, scopes, key_hash, key_hint, created_at, created_by, expires_at)
values ($1, $2, $3, $4, $5, $6, $7, $8)
returning key_id, name, scopes, key_hint, created_at, created_by, expires_at, revoked_at,
          revoked_by, last_used_at
"""

_LIST = """
select key_id, name, scopes, key_hint, created_at, created_by, expires_at, revoked_at,
       revoked_by, last_used_at
from h2s_api_keys
order by created_at desc, name
"""

# The lookup that fills a replica's key cache also records the key's use, at most once a
# minute (the WHERE on the row's current last_used_at), so requests themselves never
# write. A revoked or expired key is returned as it is; the caller refuses it.
_FIND_AND_TOUCH = """
with found as (
    select key_id, name, scopes, key_hash, expires_at, revoked_at
    from h2s_api_keys where key_hash = $1
), touched as (
    update h2s_api_keys k set last_used_at = $2
    from found f
    where k.key_id = f.key_id and f.revoked_at is null
      and (f.expires_at is null or f.expires_at > $2)
      and (k.last_used_at is null or k.last_used_at <= $2 - interval '1 minute')
)
select * from found
"""

# Revoking a key ends every sign-in session it opened, in the same statement. The key's
# row as it is after the update (the outer select sees the table as it was before it).
_REVOKE = """
with revoked as (
    update h2s_api_keys set revoked_at = $2, revoked_by = $3
    where key_id = $1 and revoked_at is null
    returning key_id, key_hash, revoked_at, revoked_by
), ended as (
    delete from h2s_admin_sessions s using revoked r where s.key_hash = r.key_hash
    returning 1
)
select k.key_id, k.name, k.scopes, k.key_hint, k.key_hash, k.created_at, k.created_by,
       k.expires_at, coalesce(r.revoked_at, k.revoked_at) as revoked_at,
       coalesce(r.revoked_by, k.revoked_by) as revoked_by, k.last_used_at,
       r.key_id is not null as revoked_now,
       (select count(*) from ended)::integer as sessions_ended
from h2s_api_keys k left join revoked r on r.key_id = k.key_id
where k.key_id = $1
"""


async def insert_key(
    conn: asyncpg.Connection,
    *,
    key_id: uuid.UUID,
    name: str,
    scopes: list[str],
    key_hash: bytes,
    key_hint: str,
    created_at: datetime,
    created_by: str,
    expires_at: datetime | None,
) -> asyncpg.Record:
    """The new key's row; a name already in force raises UniqueViolationError."""
    row: asyncpg.Record = await conn.fetchrow(
        _INSERT, key_id, name, scopes, key_hash, key_hint, created_at, created_by, expires_at
    )
    return row


async def list_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(_LIST)


async def find_and_touch(
    conn: asyncpg.Connection, key_hash: bytes, now: datetime
) -> asyncpg.Record | None:
    return await conn.fetchrow(_FIND_AND_TOUCH, key_hash, now)


async def revoke_key(
    conn: asyncpg.Connection, key_id: uuid.UUID, *, at: datetime, by: str
) -> asyncpg.Record | None:
    """The key after revocation (None if there is no such key), with ``revoked_now`` and
    ``sessions_ended``."""
    return await conn.fetchrow(_REVOKE, key_id, at, by)
