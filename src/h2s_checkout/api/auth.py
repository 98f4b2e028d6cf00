"""Who is asking, and may they: API keys with scopes, the bootstrap token, sign-in sessions.

Guard a controller or a route with one line, ``guards=[require_scope(Scope.OPERATE)]``;
a route with no scope is public, and tests/integration/test_access.py fails until every
route is listed there with its scope (or as public). In a handler, ``actor_of(request)``
is the name to hand a flow as its ``actor: str`` (``principal_of`` has the scopes too).
Once the guard has run, every log line of the request carries ``actor`` and every trace
row it writes has ``detail.actor`` (h2s_checkout.observability.logging.bind_actor).

A credential is a bearer header (a key or H2S_ADMIN_TOKEN); on the debug page, without a
header, the sign-in session (api/sessions.py). No or a wrong credential is 401
``unauthorized``; a good one without the scope is 403 ``forbidden``.

``POST /api/checkout`` is public, and a credential on it is optional: ``checkout_caller``
(the route's ``CheckoutCallerGuard`` and the checkout fast path) finds the key a
storefront's server presents, which must then be good and hold the ``checkout`` scope
(401 / 403, never quietly anonymous); its limit replaces the client address's.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from h2s_checkout.domain.access import Principal, Scope
from h2s_checkout.domain.errors import Forbidden, Unauthorized
from h2s_checkout.flows.api_keys import KeyRing
from h2s_checkout.observability.logging import bind_actor

# Where a sign-in session keeps the hash of the key that opened it (never the key).
SESSION_KEY_HASH = "key_hash"


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The request's principal (found once per request), or Unauthorized."""
    found = connection.scope.get("user")
    if isinstance(found, Principal):
        return found
    ring: KeyRing = connection.app.state.key_ring
    principal: Principal | None = None
    header = connection.headers.get("authorization")
    if header is not None:
        principal = await _from_bearer(ring, header)
    elif "session" in connection.scope:
        principal = await _from_session(ring, connection.scope["session"])
    if principal is None:
        raise Unauthorized("a valid API key is required: Authorization: Bearer h2s_key_...")
    connection.scope["user"] = principal
    bind_actor(principal.actor)
    return principal


async def _from_bearer(ring: KeyRing, header: str) -> Principal | None:
    """The principal of an ``Authorization: Bearer <key>`` header (cached per replica, see
    flows/api_keys.py: no database round trip while cached), or None."""
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    return await ring.from_key(presented.strip())


async def checkout_caller(ring: KeyRing, header: str | None) -> Principal | None:
    """Who a POST /api/checkout comes from: None (anonymous, limited per address) without
    an Authorization header; else a key holding the checkout scope, acting under its name
    from here on, or Unauthorized (401) / Forbidden (403)."""
    if header is None:
        return None
    principal = await _from_bearer(ring, header)
    if principal is None:
        raise Unauthorized(
            "the key given is not valid; send a key with the checkout scope, or no "
            "Authorization header at all"
        )
    if not principal.can(Scope.CHECKOUT):
        raise Forbidden("this key does not have the checkout scope")
    bind_actor(principal.actor)
    return principal


class CheckoutCallerGuard:
    """The checkout route's guard: no credential passes (anonymous), a bad one does not."""

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        ring: KeyRing = connection.app.state.key_ring
        principal = await checkout_caller(ring, connection.headers.get("authorization"))
        if principal is not None:
            connection.scope["user"] = principal

    def __repr__(self) -> str:
        return "checkout_caller"


def caller_of(request: Request[Any, Any, Any]) -> Principal | None:
    """The key CheckoutCallerGuard found on this request, if any."""
    found = request.scope.get("user")
    return found if isinstance(found, Principal) else None


async def _from_session(ring: KeyRing, session: Any) -> Principal | None:
    if not isinstance(session, dict):
        return None
    try:
        digest = bytes.fromhex(str(session.get(SESSION_KEY_HASH, "")))
    except ValueError:
        return None
    return await ring.from_hash(digest) if digest else None


class ScopeGuard:
    """A Litestar guard: the request's principal must hold ``scope``."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        principal = await authenticate(connection)
        if not principal.can(self.scope):
            raise Forbidden(f"this key does not have the {self.scope} scope")

    def __repr__(self) -> str:
        return f"require_scope({self.scope.value!r})"


def require_scope(scope: Scope) -> ScopeGuard:
    return ScopeGuard(scope)


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    """The principal a scope guard found for this request."""
    principal = request.scope.get("user")
    if not isinstance(principal, Principal):
        raise RuntimeError("principal_of needs a route guarded by require_scope")
    return principal


def actor_of(request: Request[Any, Any, Any]) -> str:
    """Who acts, for a flow's ``actor: str``: the key's name, or ``bootstrap``."""
    return principal_of(request).actor
