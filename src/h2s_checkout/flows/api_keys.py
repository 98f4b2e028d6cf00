"""API keys: create, list and revoke them (the actor recorded), and find whose a key is.

``KeyRing`` turns a presented key, or the key hash a sign-in session holds, into a
``Principal``. Each replica keeps what it found for ``CACHE_TTL`` so that a request does
not cost a database round trip; a lookup (a cache miss) also records the key's last use,
at most once a minute. Revocation therefore ends a key's access at once on the replica
that revoked it and within ``CACHE_TTL`` (5 s) on every other; the sessions it opened end
at once everywhere, since revoking deletes their rows (sessions are not cached).

``H2S_ADMIN_TOKEN`` is the bootstrap key: every scope, actor ``bootstrap``, no row.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from h2s_checkout.domain.access import (
    ALL_SCOPES,
    BOOTSTRAP,
    Principal,
    Scope,
    key_hash,
    key_hint,
    key_name,
    looks_like_key,
    new_api_key,
    scopes_from,
)
from h2s_checkout.domain.errors import InvalidRequest, KeyNameTaken, NotFound
from h2s_checkout.observability.logging import get_logger
from h2s_checkout.store import api_keys as sql
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import utcnow

log = get_logger(__name__)

CACHE_TTL = timedelta(seconds=5)
# Unknown keys are remembered too (a flood of guesses costs one lookup each per TTL); a
# full cache is simply emptied.
_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class KeyView:
    """A key as listed: never the key, never its hash."""

    key_id: uuid.UUID
    name: str
    scopes: list[str]
    key_hint: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> KeyView:
        return cls(
            key_id=row["key_id"],
            name=row["name"],
            scopes=sorted(row["scopes"]),
            key_hint=row["key_hint"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            revoked_by=row["revoked_by"],
            last_used_at=row["last_used_at"],
        )


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: ``key`` is shown this once and kept nowhere."""

    view: KeyView
    key: str


class KeyRing:
    """Who a key or a session's key hash belongs to, cached per replica for CACHE_TTL."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bootstrap_token: str | None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._bootstrap = (
            Principal(BOOTSTRAP, ALL_SCOPES, key_hash(bootstrap_token)) if bootstrap_token else None
        )
        self._cache: dict[bytes, tuple[datetime, Principal | None]] = {}

    async def from_key(self, presented: str) -> Principal | None:
        """The principal a bearer key or a sign-in form's key stands for, or None."""
        digest = key_hash(presented)
        if not looks_like_key(presented):
            # Not an API key: only the bootstrap token may be anything else; nothing to
            # look up.
            return self._bootstrap_for(digest)
        return await self.from_hash(digest)

    async def from_hash(self, digest: bytes) -> Principal | None:
        """The principal for a key's hash (what a sign-in session keeps), or None when the
        key is unknown, revoked or expired."""
        bootstrap = self._bootstrap_for(digest)
        if bootstrap is not None:
            return bootstrap
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            principal = await self._load(digest, now)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (now + CACHE_TTL, principal)
        if principal is None or principal.expired(now):
            return None
        return principal

    def now(self) -> datetime:
        """The time keys are checked against (a key's expiry), for stamping key changes."""
        return self._clock()

    def forget(self, digest: bytes) -> None:
        """Drop a key from this replica's cache (it was just revoked here)."""
        self._cache.pop(digest, None)

    def _bootstrap_for(self, digest: bytes) -> Principal | None:
        # Both are SHA-256 digests: equal lengths, compared in constant time.
        if self._bootstrap is not None and hmac.compare_digest(digest, self._bootstrap.key_hash):
            return self._bootstrap
        return None

    async def _load(self, digest: bytes, now: datetime) -> Principal | None:
        async with connection(self._pool) as conn:
            row = await sql.find_and_touch(conn, digest, now)
        # The index found the row by its hash; the hash is a one-way function of a random
        # key, so timing there tells nothing about a key. Compared again in constant time.
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(bytes(row["key_hash"]), digest):
            return None
        return Principal(
            name=row["name"],
            scopes=frozenset(Scope(s) for s in row["scopes"]),
            key_hash=digest,
            key_id=row["key_id"],
            expires_at=row["expires_at"],
        )


async def create_key(
    pool: asyncpg.Pool,
    *,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
    actor: str,
    now: datetime,
) -> NewKey:
    """A new key with its scopes; the key is in the answer and nowhere else."""
    checked_name = key_name(name)
    checked_scopes = scopes_from(scopes)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidRequest("expires_at must carry a time zone, e.g. 2027-01-31T00:00:00Z")
        if expires_at <= now:
            raise InvalidRequest("expires_at must be in the future")
    key = new_api_key()
    try:
        async with connection(pool) as conn:
            row = await sql.insert_key(
                conn,
                key_id=uuid.uuid4(),
                name=checked_name,
                scopes=sorted(s.value for s in checked_scopes),
                key_hash=key_hash(key),
                key_hint=key_hint(key),
                created_at=now,
                created_by=actor,
                expires_at=expires_at,
            )
    except asyncpg.UniqueViolationError:
        raise KeyNameTaken(f"a key named {checked_name!r} is in force; revoke it first") from None
    view = KeyView.from_row(row)
    log.info(
        "api_key.created",
        key_id=str(view.key_id),
        key_name=view.name,
        scopes=view.scopes,
        expires_at=view.expires_at.isoformat() if view.expires_at else None,
        actor=actor,
    )
    return NewKey(view=view, key=key)


async def list_keys(pool: asyncpg.Pool) -> list[KeyView]:
    async with connection(pool) as conn:
        rows = await sql.list_keys(conn)
    return [KeyView.from_row(row) for row in rows]


async def revoke_key(
    pool: asyncpg.Pool,
    ring: KeyRing | None,
    key_id: uuid.UUID,
    *,
    actor: str,
    now: datetime,
) -> KeyView:
    """Revoke a key and end its sessions; a key already revoked is left as it was."""
    async with connection(pool) as conn:
        row = await sql.revoke_key(conn, key_id, at=now, by=actor)
    if row is None:
        raise NotFound(f"no API key {key_id}")
    if ring is not None:
        ring.forget(bytes(row["key_hash"]))
    view = KeyView.from_row(row)
    if row["revoked_now"]:
        log.info(
            "api_key.revoked",
            key_id=str(key_id),
            key_name=view.name,
            sessions_ended=row["sessions_ended"],
            actor=actor,
        )
    return view
