"""Local Stripe API emulator (checkout sessions, refunds) with fault injection, hosted pages
and signed webhooks, for tests and benchmarks."""

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
    # Lazy: `python -m h2s_checkout.payments.emulator send-event` must not load
    # the SDK and aiohttp just to post one admin request.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
