"""structlog set-up: JSON off a TTY, console on one, secrets and contact data masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import msgspec
import structlog

from h2s_checkout.log_lines import StderrLogger

_SECRET_KEYS = frozenset(
    {
        "authorization",
        "api_key",
        "stripe_api_key",
        "password",
        "token",
        "admin_token",
        "card",
        "card_number",
        "cvc",
        "stripe-signature",
        "webhook_secret",
    }
)
_CONTACT_KEYS = frozenset({"email", "customer_email", "phone"})
_SECRET_PATTERN = re.compile(r"\b(sk|rk|whsec)_(test|live)?_?[A-Za-z0-9]{4,}")


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_phone(phone: str) -> str:
    digits = [c for c in phone if c.isdigit()]
    return "***" + "".join(digits[-2:]) if digits else "***"


def _mask_value(key: str, value: Any) -> Any:
    if key in _SECRET_KEYS:
        return "[redacted]"
    if key in _CONTACT_KEYS and isinstance(value, str):
        return mask_email(value) if "@" in value else mask_phone(value)
    if isinstance(value, str):
        # Every secret the pattern knows has an underscore: most values (paths, ids,
        # states) have none and skip the regex, which runs on every log line's fields.
        return _SECRET_PATTERN.sub("[redacted]", value) if "_" in value else value
    if isinstance(value, dict):
        return {k: _mask_value(str(k).lower(), v) for k, v in value.items()}
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask secrets and customer contact data wherever they appear in an event."""
    for key in list(event_dict):
        event_dict[key] = _mask_value(key.lower(), event_dict[key])
    return event_dict


def _stderr_logger(*_: Any) -> StderrLogger:
    return StderrLogger()


# msgspec encodes a log line several times faster than the standard library; what it
# cannot encode is written as its repr, as structlog's own fallback does.
_line_encoder = msgspec.json.Encoder(enc_hook=repr)


def _json_line(event_dict: Any, **_: Any) -> str:
    return _line_encoder.encode(event_dict).decode()


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if as_json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
    # The stripe SDK logs every request at INFO through the standard library; our own
    # stripe.* events carry what matters, without request URLs or headers.
    logging.getLogger("stripe").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]


# Who is acting in this request or background pass: a key's name, "bootstrap", "reconciler"
# or "webhook". Bound with the log context so that every log line carries it, and read by
# store/traces.py so that every trace row written meanwhile carries it (a ContextVar of its
# own: read on the checkout's hot path, where structlog's get_contextvars would copy the
# whole context each time).
_ACTOR: ContextVar[str | None] = ContextVar("h2s_actor", default=None)


def bind_actor(actor: str) -> None:
    """Name who acts for the rest of the current request (api/auth.py does, per request)."""
    _ACTOR.set(actor)
    structlog.contextvars.bind_contextvars(actor=actor)


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Name who acts for the length of a block (a reconciler pass, a webhook event)."""
    token = _ACTOR.set(actor)
    try:
        with structlog.contextvars.bound_contextvars(actor=actor):
            yield
    finally:
        _ACTOR.reset(token)


def current_actor() -> str | None:
    return _ACTOR.get()


def clear_request_context() -> None:
    """A fresh context at a request's start and end: no log fields, no actor."""
    structlog.contextvars.clear_contextvars()
    _ACTOR.set(None)
