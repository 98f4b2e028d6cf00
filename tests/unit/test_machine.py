"""The state machine allows exactly the transitions the design names, and nothing else."""

from __future__ import annotations

import pytest
from statemachine.exceptions import TransitionNotAllowed

from h2s_checkout.domain.errors import IllegalTransition
from h2s_checkout.domain.machine import (
    FINAL_STATES,
    INITIAL_STATE,
    TRANSITIONS,
    CheckoutMachine,
    Transitions,
)

ALLOWED = {
    ("pending_payment", "queue_job"): "job_queued",
    ("job_queued", "create_session"): "session_created",
    ("session_created", "pay"): "paid",
    ("session_created", "expire"): "expired",
    ("session_created", "fail_payment"): "payment_failed",
    ("session_created", "cancel"): "cancelled",
    ("paid", "refund"): "refund_pending",
    ("refund_pending", "complete_refund"): "refunded",
    ("refund_pending", "fail_refund"): "refund_failed",
    ("refund_failed", "retry_refund"): "refund_pending",
    ("pending_payment", "fail"): "failed",
    ("job_queued", "fail"): "failed",
    ("failed", "clean"): "cleaned",
}
STATES = [
    "pending_payment",
    "job_queued",
    "session_created",
    "paid",
    "expired",
    "payment_failed",
    "cancelled",
    "refund_pending",
    "refunded",
    "refund_failed",
    "failed",
    "cleaned",
]
EVENTS = sorted({event for _state, event in ALLOWED})
PAIRS = [(s, e) for s in STATES for e in EVENTS]


class Model:
    def __init__(self, state: str | None) -> None:
        self.state = state


@pytest.mark.parametrize(("state", "event"), PAIRS)
def test_each_event_in_each_state_of_the_class(state, event):
    machine = CheckoutMachine(model=Model(state))
    target = ALLOWED.get((state, event))
    if target is None:
        with pytest.raises(TransitionNotAllowed):
            machine.send(event)
        assert machine.model.state == state
    else:
        machine.send(event)
        assert machine.model.state == target


@pytest.mark.parametrize(("state", "event"), PAIRS)
def test_the_decider_answers_as_the_class_does(state, event):
    target = ALLOWED.get((state, event))
    for decider in (Transitions(), TRANSITIONS):
        for _ in range(2):  # the first answer comes from the engine, the next may be kept
            if target is None:
                with pytest.raises(IllegalTransition):
                    decider.target(state, event)
            else:
                assert decider.target(state, event) == target


def test_a_machine_with_a_guard_is_run_for_every_event():
    """A guard added to the class makes answers depend on more than (state, event): the
    decider then asks the engine every time rather than keep an answer."""
    from statemachine import State, StateMachine

    from h2s_checkout.domain.machine import _has_callbacks

    class Guarded(StateMachine):
        open_ = State(initial=True)
        done = State(final=True)
        close = open_.to(done, cond="allowed")

        def allowed(self) -> bool:
            return True

    assert _has_callbacks(Guarded(model=Model(None))) is True
    assert _has_callbacks(CheckoutMachine(model=Model(None))) is False
    assert Transitions()._remember is True


def test_the_decider_survives_final_states():
    decider = Transitions()
    decider._remember = False  # run the engine every time, as with a guard
    for _ in range(3):
        assert decider.target("session_created", "pay") == "paid"
        assert decider.target("failed", "clean") == "cleaned"
        assert decider.target("pending_payment", "queue_job") == "job_queued"


def test_a_new_checkout_starts_pending_payment():
    assert INITIAL_STATE == "pending_payment"
    assert CheckoutMachine(model=Model(None)).model.state == "pending_payment"


def test_final_states():
    assert {"expired", "payment_failed", "cancelled", "refunded", "cleaned"} == FINAL_STATES
