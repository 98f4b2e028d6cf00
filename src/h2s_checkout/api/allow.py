"""The Allow header of Litestar's own OPTIONS answers, for paths with several methods.

Litestar 2 makes a path's OPTIONS handler when the path's first handler is registered and
it keeps answering with that first method only (litestar-org/litestar#4169, fixed in 3):
OPTIONS /api/keys said "OPTIONS, POST" without GET, and the contract test caught it. Once
the app's routes are final, each default OPTIONS handler answers with its route's methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Litestar, Response
from litestar.enums import MediaType
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_204_NO_CONTENT
from litestar.types import Scope

_DEFAULT = "HTTPRoute.create_options_handler.<locals>.options_handler"


def _answer(allow: str) -> Callable[[Scope], Response[Any]]:
    def options_handler(scope: Scope) -> Response[Any]:  # the signature Litestar parsed
        return Response(
            content=None,
            status_code=HTTP_204_NO_CONTENT,
            headers={"Allow": allow},
            media_type=MediaType.TEXT,
        )

    return options_handler


def allow_every_method(app: Litestar) -> None:
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or "OPTIONS" not in route.route_handler_map:
            continue
        handler, _ = route.route_handler_map["OPTIONS"]
        if getattr(handler.fn, "__qualname__", "") == _DEFAULT:
            # A plain function, as the one it replaces (made with sync_to_thread=False).
            handler._fn = _answer(", ".join(sorted(route.methods)))  # type: ignore[assignment]
