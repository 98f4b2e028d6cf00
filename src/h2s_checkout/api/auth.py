"""The admin bearer token, compared in constant time; no token configured means closed."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from h2s_checkout.domain.errors import Unauthorized


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    expected: str | None = connection.app.state.settings.admin_token
    header = connection.headers.get("authorization", "")
    scheme, _sep, presented = header.partition(" ")
    if (
        expected is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(presented.strip().encode(), expected.encode())
    ):
        raise Unauthorized("a valid admin bearer token is required")
