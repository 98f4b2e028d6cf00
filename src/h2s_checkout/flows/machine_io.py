"""Rebuild a CheckoutMachine from a stored state, wired to a TraceWriter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from h2s_checkout.domain.machine import CheckoutMachine
from h2s_checkout.store.traces import TraceWriter


@dataclass
class StoredState:
    """The model python-statemachine reads and writes: the state column in memory."""

    state: str | None


class PhaseWriter:
    """The machine's one listener; it hands each transition to the current phase's writer.

    Registering a listener is most of what building a machine costs, so a checkout that
    runs start to finish in one request keeps one machine and swaps the writer (and with
    it the connection) between phases.
    """

    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer

    async def after_transition(self, event: Any, source: Any, target: Any, **kwargs: Any) -> None:
        await self.writer.after_transition(event, source, target, **kwargs)


@dataclass
class BoundMachine:
    machine: CheckoutMachine
    listener: PhaseWriter

    def write_with(self, writer: TraceWriter) -> CheckoutMachine:
        """The same machine, its next transitions written by ``writer``."""
        self.listener.writer = writer
        return self.machine


async def bound_machine_at(state: str, writer: TraceWriter) -> BoundMachine:
    listener = PhaseWriter(writer)
    machine = CheckoutMachine(model=StoredState(state), listeners=[listener])
    await machine.activate_initial_state()
    return BoundMachine(machine, listener)


async def machine_at(state: str, writer: TraceWriter) -> CheckoutMachine:
    """A machine that continues from ``state``; its transitions are written by ``writer``."""
    return (await bound_machine_at(state, writer)).machine
