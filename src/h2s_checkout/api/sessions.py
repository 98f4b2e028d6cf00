"""The debug page's sign-in session: Litestar's server-side sessions, kept in PostgreSQL.

The cookie holds a random session id (32 bytes), HttpOnly, SameSite=Strict, on /debug
only, Secure when PUBLIC_BASE_URL is https. The session holds the hash of the key that
signed in, never the key; the table keeps the id's hash, never the id. A session ends at
sign-out, after SESSION_IDLE without a request, when its key is revoked (the revocation
deletes its rows), and when its key stops working for any other reason (each request
resolves the key again, api/auth.py). Every replica reads the same table.

Two changes to Litestar's backend: a request without a session writes nothing (Litestar
would store an empty session and set a cookie on every answer), and signing in always
starts a new session id, so an id planted before sign-in is never promoted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.stores.base import Store
from litestar.types import Empty, Message, ScopeSession
from litestar.utils.dataclass import extract_dataclass_items

from h2s_checkout.api.auth import SESSION_KEY_HASH
from h2s_checkout.domain.access import Principal
from h2s_checkout.store import admin_sessions as sql
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import utcnow

SESSION_COOKIE = "h2s_session"
SESSION_IDLE = timedelta(hours=8)
STORE_NAME = "h2s_admin_sessions"
# Set on the scope by start_session and by the backend once it has read a session.
_STARTED = "h2s_session_started"
_LOADED = "h2s_session_loaded"


def _id_hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def _key_hash_in(data: bytes) -> bytes | None:
    try:
        value = msgspec.json.decode(data)
        return bytes.fromhex(value[SESSION_KEY_HASH]) if isinstance(value, dict) else None
    except (msgspec.DecodeError, KeyError, TypeError, ValueError):
        return None


class PostgresSessionStore(Store):
    """Litestar's Store interface over h2s_admin_sessions (store/admin_sessions.py)."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._pool: asyncpg.Pool | None = None

    def bind(self, pool: asyncpg.Pool) -> None:
        """The pool is opened in the app's lifespan, after the store is registered."""
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the session store is used before the app started")
        return self._pool

    async def set(
        self, key: str, value: str | bytes, expires_in: int | timedelta | None = None
    ) -> None:
        data = value.encode() if isinstance(value, str) else value
        if expires_in is None:
            ttl = SESSION_IDLE
        else:
            ttl = expires_in if isinstance(expires_in, timedelta) else timedelta(seconds=expires_in)
        now = self._clock()
        async with connection(self.pool) as conn:
            await sql.set_session(
                conn,
                _id_hash(key),
                key_hash=_key_hash_in(data),
                data=data,
                now=now,
                expires_at=now + ttl,
            )

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        renew = timedelta(seconds=renew_for) if isinstance(renew_for, int) else renew_for
        async with connection(self.pool) as conn:
            return await sql.get_session(conn, _id_hash(key), self._clock(), renew)

    async def delete(self, key: str) -> None:
        async with connection(self.pool) as conn:
            await sql.delete_session(conn, _id_hash(key))

    async def delete_all(self) -> None:
        async with connection(self.pool) as conn:
            await sql.delete_all_sessions(conn)

    async def exists(self, key: str) -> bool:
        return await self.expires_in(key) is not None

    async def expires_in(self, key: str) -> int | None:
        now = self._clock()
        async with connection(self.pool) as conn:
            expires_at = await sql.session_expires_at(conn, _id_hash(key), now)
        return None if expires_at is None else int((expires_at - now).total_seconds())


class SignInSessionBackend(ServerSideSessionBackend):
    async def load_from_connection(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> dict[str, Any]:
        session_id = connection.cookies.get(self.config.key)
        if session_id:
            store = self.config.get_store_from_app(connection.scope["app"])
            data = await self.get(session_id, store=store)
            if data is not None:
                connection.scope[_LOADED] = data  # type: ignore[literal-required]
                return self.deserialize_data(data)
        return {}

    async def store_in_message(
        self,
        scope_session: ScopeSession,
        message: Message,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> None:
        scope: Any = connection.scope
        store = self.config.get_store_from_app(scope["app"])
        headers = MutableScopeHeaders.from_message(message)
        presented = connection.cookies.get(self.config.key)
        loaded: bytes | None = scope.get(_LOADED)
        params = dict(
            extract_dataclass_items(self.config, exclude_none=True, include=Cookie.__dict__.keys())
        )
        if scope_session is Empty or not scope_session:
            # Signed out, or never signed in: end what the cookie named, write nothing else.
            if presented:
                if loaded is not None:
                    await self.delete(presented, store=store)
                params.update(max_age=0, expires=0)
                headers.add(
                    "Set-Cookie",
                    Cookie(value="", key=self.config.key, **params).to_header(header=""),
                )
            return
        data = self.serialize_data(scope_session, scope)
        session_id = presented
        if session_id is None or loaded is None or scope.get(_STARTED):
            if presented and loaded is not None:
                await self.delete(presented, store=store)
            session_id = self.generate_session_id()
        if session_id != presented or data != loaded:
            await self.set(session_id, data, store=store)
        # Sent again on every answer, so that the browser's copy expires with the server's.
        headers.add(
            "Set-Cookie",
            Cookie(value=session_id, key=self.config.key, **params).to_header(header=""),
        )


@dataclass
class SignInSessionConfig(ServerSideSessionConfig):
    _backend_class = SignInSessionBackend


def session_config(*, secure: bool) -> SignInSessionConfig:
    return SignInSessionConfig(
        key=SESSION_COOKIE,
        max_age=int(SESSION_IDLE.total_seconds()),
        renew_on_access=True,
        path="/debug",
        httponly=True,
        samesite="strict",
        secure=secure,
        store=STORE_NAME,
    )


def start_session(request: Request[Any, Any, Any], principal: Principal) -> None:
    """Sign in: a new session (a new id) that remembers which key opened it."""
    request.scope[_STARTED] = True  # type: ignore[literal-required]
    request.set_session({SESSION_KEY_HASH: principal.key_hash.hex(), "actor": principal.actor})


def end_session(request: Request[Any, Any, Any]) -> None:
    """Sign out: the session's row is deleted and the cookie expired."""
    request.clear_session()
