"""A local Stripe API for Checkout Sessions, their payments and refunds, that the official
`stripe` SDK (or any HTTP client) talks to over HTTP as it would to api.stripe.com: Stripe's
form encoding, API-key auth, error JSON and idempotency keys; a hosted page behind each
session's `url` whose Pay button completes it; signed webhooks with Stripe's retries; faults
injected per request (latency, 5xx, 429, 400, timeouts, dropped connections, answers lost
after the work was done) in-process or over its admin API (`/_emulator/*`, behind an admin
token); and, optionally, its state in a SQLite file across restarts. It imports nothing of
the service or the bench: it is a product of its own (README.md beside this file), run by
`python -m stripe_checkout_emulator`, in-process as `EmulatorServer`, or by the service's
embedded stack."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import EmulatorApp
    from .faults import FaultRule, FaultSet
    from .ledger import RefundRule
    from .server import EmulatorServer
    from .state import EmulatorState, RecordedRequest
    from .webhooks import RetryPolicy, build_event, sign_payload

__all__ = [
    "EmulatorApp",
    "EmulatorServer",
    "EmulatorState",
    "FaultRule",
    "FaultSet",
    "RecordedRequest",
    "RefundRule",
    "RetryPolicy",
    "build_event",
    "sign_payload",
]

_HOMES = {
    "EmulatorApp": "app",
    "EmulatorServer": "server",
    "EmulatorState": "state",
    "FaultRule": "faults",
    "FaultSet": "faults",
    "RecordedRequest": "state",
    "RefundRule": "ledger",
    "RetryPolicy": "webhooks",
    "build_event": "webhooks",
    "sign_payload": "webhooks",
}


def __getattr__(name: str) -> Any:
    # Lazy: `python -m stripe_checkout_emulator send-event` must not load
    # the SDK and aiohttp just to post one admin request.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
