"""The checkout state machine: the one place that says which transitions exist."""

from __future__ import annotations

from statemachine import State, StateMachine


class CheckoutMachine(StateMachine):
    """A checkout's life: order and job first, then the payment session, then its end.

    The machine is persisted in ``h2s_checkouts.state``; a listener writes each
    transition and its trace row in the caller's database transaction.
    """

    pending_payment = State("Pending payment", initial=True)
    job_queued = State("Job queued")
    session_created = State("Session created")
    paid = State("Paid", final=True)
    expired = State("Expired", final=True)
    failed = State("Failed")
    cleaned = State("Cleaned", final=True)

    queue_job = pending_payment.to(job_queued)
    create_session = job_queued.to(session_created)
    pay = session_created.to(paid)
    expire = session_created.to(expired)
    fail = pending_payment.to(failed) | job_queued.to(failed)
    clean = failed.to(cleaned)


STATES: tuple[str, ...] = tuple(state.id for state in CheckoutMachine.states)
FINAL_STATES: frozenset[str] = frozenset(s.id for s in CheckoutMachine.states if s.final)
# States the error path can still clean up: those that may fail, and failed itself.
CLEANABLE_STATES: frozenset[str] = frozenset(
    {
        s.id
        for s in CheckoutMachine.states
        if any("fail" in (str(e) for e in t.events) for t in s.transitions if t.source is s)
    }
    | {CheckoutMachine.failed.id}
)
