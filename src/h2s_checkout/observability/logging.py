"""structlog set-up: JSON off a TTY, console on one, secrets and contact data masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

import msgspec
import structlog

from h2s_checkout.observability import tracing
from h2s_checkout.observability.log_lines import StderrLogger

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


# The fields every log line of the current request or background pass carries (its
# request id, its actor, the checkout's trace id): one ContextVar holding a mapping that is
# replaced, never changed, so a task started meanwhile keeps the fields it was started
# with. structlog.contextvars keeps a ContextVar per field and finds them by walking a copy
# of the whole context, which holds every library's variables, twice per request to clear
# and once per line to merge: 7 of the 19 µs of a request's log line on the bench machine.
_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})
_FIELDS: ContextVar[Mapping[str, Any]] = ContextVar("h2s_log_fields", default=_NO_FIELDS)


def bind_log_fields(**fields: Any) -> None:
    """Add ``fields`` to every later log line of the current context."""
    _FIELDS.set({**_FIELDS.get(), **fields})


def unbind_log_fields(*names: str) -> None:
    current = _FIELDS.get()
    _FIELDS.set({k: v for k, v in current.items() if k not in names})


def log_fields() -> Mapping[str, Any]:
    """The fields bound in the current context."""
    return _FIELDS.get()


@contextmanager
def bound_log_fields(**fields: Any) -> Iterator[None]:
    """``fields`` on the log lines of a block; the fields before it afterwards."""
    token = _FIELDS.set({**_FIELDS.get(), **fields})
    try:
        yield
    finally:
        _FIELDS.reset(token)


def merge_log_fields(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the bound fields, under the line's own."""
    for key, value in _FIELDS.get().items():
        event_dict.setdefault(key, value)
    return event_dict


def add_trace_ids(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: with tracing on, the current span's trace_id and span_id.
    Asked on each line rather than chosen at configuration, since a logger keeps the
    processors of its first use (cache_logger_on_first_use) and tracing may start after."""
    trace_ids = tracing.log_processor()
    return event_dict if trace_ids is None else trace_ids(logger, method, event_dict)


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
            merge_log_fields,
            add_trace_ids,
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
# own: read on the checkout's hot path).
_ACTOR: ContextVar[str | None] = ContextVar("h2s_actor", default=None)


def bind_actor(actor: str) -> None:
    """Name who acts for the rest of the current request (api/auth.py does, per request)."""
    _ACTOR.set(actor)
    bind_log_fields(actor=actor)


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Name who acts for the length of a block (a reconciler pass, a webhook event)."""
    token = _ACTOR.set(actor)
    try:
        with bound_log_fields(actor=actor):
            yield
    finally:
        _ACTOR.reset(token)


def current_actor() -> str | None:
    return _ACTOR.get()


def clear_request_context() -> None:
    """A fresh context at a request's start and end: no log fields, no actor."""
    _FIELDS.set(_NO_FIELDS)
    _ACTOR.set(None)
