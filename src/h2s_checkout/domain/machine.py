"""The checkout state machine: the one place that says which transitions exist."""

from __future__ import annotations

import threading

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

from h2s_checkout.domain.errors import IllegalTransition


class CheckoutMachine(StateMachine):
    """A checkout's life: order and job first, then the payment session, then its end,
    and after payment, a cancellation refunded exactly once.

    Under pay-on-completion the session only holds the amount (``authorized``); completing
    the job captures the final amount once (``capture_pending`` until Stripe confirms,
    then ``paid``); a cancel releases the hold; a hold that lapses first ends
    ``authorization_expired``. A paid order refunded in part is ``partially_refunded``
    until the whole amount is back.

    The machine decides; the checkout's state lives in ``h2s_checkouts.state``, and the
    store writes each decided transition with its trace row in one statement.
    """

    pending_payment = State("Pending payment", initial=True)
    job_queued = State("Job queued")
    session_created = State("Session created")
    paid = State("Paid")
    expired = State("Expired", final=True)
    payment_failed = State("Payment failed", final=True)
    cancelled = State("Cancelled", final=True)
    refund_pending = State("Refund pending")
    refunded = State("Refunded", final=True)
    refund_failed = State("Refund failed")
    failed = State("Failed")
    cleaned = State("Cleaned", final=True)
    authorized = State("Authorized")
    capture_pending = State("Capture pending")
    # Not final: staff cancel the flagged job (or book it again on a new checkout).
    authorization_expired = State("Authorization expired")
    partially_refunded = State("Partially refunded")

    queue_job = pending_payment.to(job_queued)
    create_session = job_queued.to(session_created)
    pay = session_created.to(paid)
    # Pay on completion: the card is held at booking, charged when the job is done.
    authorize = session_created.to(authorized)
    complete_job = authorized.to(capture_pending)
    capture = capture_pending.to(paid)
    # The hold lapsed (Stripe cancelled it, reason automatic) before it was captured.
    lapse = authorized.to(authorization_expired) | capture_pending.to(authorization_expired)
    expire = session_created.to(expired)
    # A delayed payment (a bank debit) that did not go through.
    fail_payment = session_created.to(payment_failed)
    # Cancelled before payment: the session is expired at the provider first.
    # Cancelled while held: the hold is released at the provider, nothing was charged.
    # A lapsed hold's order is cancelled the same way, with nothing left to release.
    cancel = (
        session_created.to(cancelled)
        | authorized.to(cancelled)
        | authorization_expired.to(cancelled)
    )
    # Cancelled after payment: the job is cancelled and the money (what is left of it after
    # partial refunds) goes back.
    refund = paid.to(refund_pending) | partially_refunded.to(refund_pending)
    # A partial refund that succeeded: part of the money is back, or, with the last part,
    # all of it.
    refund_part = paid.to(partially_refunded) | partially_refunded.to(partially_refunded)
    refund_rest = paid.to(refunded) | partially_refunded.to(refunded)
    complete_refund = refund_pending.to(refunded)
    fail_refund = refund_pending.to(refund_failed)
    retry_refund = refund_failed.to(refund_pending)
    fail = pending_payment.to(failed) | job_queued.to(failed)
    clean = failed.to(cleaned)


STATES: tuple[str, ...] = tuple(state.id for state in CheckoutMachine.states)
FINAL_STATES: frozenset[str] = frozenset(s.id for s in CheckoutMachine.states if s.final)
INITIAL_STATE: str = next(s.id for s in CheckoutMachine.states if s.initial)
# States the error path can still clean up: those that may fail, and failed itself.
CLEANABLE_STATES: frozenset[str] = frozenset(
    {
        s.id
        for s in CheckoutMachine.states
        if any("fail" in (str(e) for e in t.events) for t in s.transitions if t.source is s)
    }
    | {CheckoutMachine.failed.id}
)


class _Scratch:
    """The model the reused machine reads and writes: a state set just before each event."""

    state: str | None = None


def _has_callbacks(machine: CheckoutMachine) -> bool:
    """Whether the machine runs any guard, validator or action of its own.

    Read from the library's callback registry; if that ever moves, assume it does.
    """
    registry = getattr(getattr(machine, "_callbacks", None), "_registry", None)
    if registry is None:
        return True
    return any(len(list(executor)) for executor in registry.values())


class Transitions:
    """Decides each state change with CheckoutMachine's own engine.

    One machine per thread, built once and reused: each decision sets the scratch model
    to the stored state, sends the event through the library's synchronous engine and reads
    the state it ends in. Nothing awaits inside the engine (the writes happen after, in the
    store), so no async engine is needed.

    The machine declares no guards, validators or actions, so its answer depends only on
    (state, event): the engine decides each pair the first time this process meets it,
    and the answer is kept. python-statemachine 3.2 spends about 200 µs per event in its
    engine (docs/benchmarks.md); a checkout makes two transitions on the hot path, which
    would be a sixth of the worker's whole budget per checkout. A machine with callbacks
    would be run for every event, so adding a guard later cannot be silently skipped.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._decided: dict[tuple[str, str], str | None] = {}
        self._remember = not _has_callbacks(CheckoutMachine(model=_Scratch()))

    def _machine(self) -> tuple[CheckoutMachine, _Scratch]:
        pair: tuple[CheckoutMachine, _Scratch] | None = getattr(self._local, "pair", None)
        if pair is None:
            model = _Scratch()
            pair = (CheckoutMachine(model=model), model)
            self._local.pair = pair
        return pair

    def _run_engine(self, state: str, event: str) -> str | None:
        machine, model = self._machine()
        model.state = state
        try:
            machine.send(event)
        except TransitionNotAllowed:
            model.state = None
            return None
        target: str | None = model.state
        model.state = None
        if target in FINAL_STATES:
            # The library ends a machine that reaches a final state; the next decision
            # needs a fresh one.
            self._local.pair = None
        return target

    def target(self, state: str, event: str, *, checkout_id: str | None = None) -> str:
        """The state ``event`` moves a checkout in ``state`` to; IllegalTransition if none."""
        key = (state, event)
        if key in self._decided:
            target = self._decided[key]
        else:
            target = self._run_engine(state, event)
            if self._remember:
                self._decided[key] = target
        if target is None:
            raise IllegalTransition(
                f"{event} is not allowed in state {state}", checkout_id=checkout_id
            )
        return target


TRANSITIONS = Transitions()
"""The process's one decider; flows ask it before every state change they write."""
