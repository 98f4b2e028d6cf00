"""The state machine allows exactly the transitions the design names, and nothing else."""

from __future__ import annotations

import pytest
from statemachine.exceptions import TransitionNotAllowed

from h2s_checkout.domain.machine import FINAL_STATES, CheckoutMachine
from h2s_checkout.flows.machine_io import StoredState

ALLOWED = {
    ("pending_payment", "queue_job"): "job_queued",
    ("job_queued", "create_session"): "session_created",
    ("session_created", "pay"): "paid",
    ("session_created", "expire"): "expired",
    ("pending_payment", "fail"): "failed",
    ("job_queued", "fail"): "failed",
    ("failed", "clean"): "cleaned",
}
STATES = [
    "pending_payment", "job_queued", "session_created", "paid", "expired", "failed", "cleaned"
]
EVENTS = ["queue_job", "create_session", "pay", "expire", "fail", "clean"]


class Recorder:
    """An async listener, as the TraceWriter is: it selects the async engine."""

    def __init__(self) -> None:
        self.moves: list[tuple[str, str, str]] = []

    async def after_transition(self, event, source, target) -> None:
        self.moves.append((str(event.id), source.id, target.id))


async def machine_in(state: str | None) -> tuple[CheckoutMachine, Recorder]:
    recorder = Recorder()
    machine = CheckoutMachine(model=StoredState(state), listeners=[recorder])
    await machine.activate_initial_state()
    return machine, recorder


@pytest.mark.parametrize(("state", "event"), [(s, e) for s in STATES for e in EVENTS])
async def test_each_event_in_each_state(state, event):
    machine, recorder = await machine_in(state)
    target = ALLOWED.get((state, event))
    if target is None:
        with pytest.raises(TransitionNotAllowed):
            await machine.send(event)
        assert machine.model.state == state
        assert recorder.moves == []
    else:
        await machine.send(event)
        assert machine.model.state == target
        assert recorder.moves == [(event, state, target)]


async def test_a_new_machine_starts_pending_payment():
    machine, _ = await machine_in(None)
    assert machine.model.state == "pending_payment"


def test_final_states():
    assert {"paid", "expired", "cleaned"} == FINAL_STATES
