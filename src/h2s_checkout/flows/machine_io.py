"""Rebuild a CheckoutMachine from a stored state, wired to a TraceWriter."""

from __future__ import annotations

from dataclasses import dataclass

from h2s_checkout.domain.machine import CheckoutMachine
from h2s_checkout.store.traces import TraceWriter


@dataclass
class StoredState:
    """The model python-statemachine reads and writes: the state column in memory."""

    state: str | None


async def machine_at(state: str, writer: TraceWriter) -> CheckoutMachine:
    """A machine that continues from ``state``; its transitions are written by ``writer``."""
    machine = CheckoutMachine(model=StoredState(state), listeners=[writer])
    await machine.activate_initial_state()
    return machine
