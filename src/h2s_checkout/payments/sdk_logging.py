"""The stripe SDK's log calls, made only when a line would be written.

The SDK (16.x) formats each of its log messages before it asks the logger: five per
request, two of them over the whole request form and the whole response body (a regex
search and a repr of each). The service keeps the ``stripe`` logger at WARNING
(logging.py), so that work was thrown away on every checkout: about 0.1 ms of the
worker's CPU on the 2-core bench machine (docs/benchmarks.md).

``install()`` puts a level check in front of the SDK's two functions, the same check the
SDK and the logging module make afterwards: with ``STRIPE_LOG`` / ``stripe.log`` set,
or the ``stripe`` logger enabled at that level, every line is formatted and written
exactly as before. If a later SDK moves these functions, ``install()`` leaves it as it
is (its tests say so) and the SDK logs as it always did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from stripe import _api_requestor, _util

LogCall = Callable[..., None]

_logger = logging.getLogger("stripe")
_sdk_debug: LogCall | None = getattr(_util, "log_debug", None)
_sdk_info: LogCall | None = getattr(_util, "log_info", None)
# STRIPE_LOG / stripe.log, as the SDK reads them on each call.
_console_level: Callable[[], str | None] = getattr(_util, "_console_log_level", lambda: None)


def _log_debug(message: str, **params: Any) -> None:
    if _logger.isEnabledFor(logging.DEBUG) or _console_level() == "debug":
        assert _sdk_debug is not None
        _sdk_debug(message, **params)


def _log_info(message: str, **params: Any) -> None:
    if _logger.isEnabledFor(logging.INFO) or _console_level() in ("debug", "info"):
        assert _sdk_info is not None
        _sdk_info(message, **params)


def install() -> bool:
    """Put the level checks in place (idempotent); False when this SDK has no such
    functions where 16.x keeps them, and nothing was changed."""
    if _sdk_debug is None or _sdk_info is None:
        return False
    # _util's own, called by _http_client as _util.log_info; _api_requestor's, imported by name.
    for module in (_util, _api_requestor):
        if getattr(module, "log_debug", None) is _sdk_debug:
            setattr(module, "log_debug", _log_debug)  # noqa: B010 - not in the SDK's types
        if getattr(module, "log_info", None) is _sdk_info:
            setattr(module, "log_info", _log_info)  # noqa: B010
    return _util.log_debug is _log_debug and _util.log_info is _log_info
