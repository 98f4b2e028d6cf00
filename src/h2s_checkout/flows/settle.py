"""Apply a session's end (paid, authorized, expired, a delayed payment failed) to its
checkout: from a webhook, the reconciler, or a cancellation that found the session already
paid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from h2s_checkout.domain.errors import IllegalTransition
from h2s_checkout.domain.events import (
    ORDER_AUTHORIZED,
    ORDER_CANCELLED,
    ORDER_EXPIRED,
    ORDER_PAID,
)
from h2s_checkout.domain.machine import TRANSITIONS
from h2s_checkout.flows import refunds
from h2s_checkout.flows.begin_checkout import CREATE_SESSION, success_body
from h2s_checkout.observability.logging import get_logger
from h2s_checkout.payments.port import ProviderPaymentIntent, ProviderSession
from h2s_checkout.store import captures, checkouts, outbox, payments
from h2s_checkout.store import refunds as refunds_store
from h2s_checkout.store.traces import (
    Step,
    count_transition,
    record_steps,
    transition_row,
    utcnow,
    write_transition,
)

log = get_logger(__name__)

PAID = "paid"
EXPIRED = "expired"
PAYMENT_FAILED = "payment_failed"
# The card holds the amount (manual capture): Stripe's session says "unpaid", as for a
# bank debit; its PaymentIntent, requires_capture, tells a hold apart (is_hold).
AUTHORIZED = "authorized"
# The checkout's event and what happens to its order for each outcome of an open session.
_OUTCOME_EVENTS = {
    PAID: "pay",
    AUTHORIZED: "authorize",
    EXPIRED: "expire",
    PAYMENT_FAILED: "fail_payment",
}


# How long a card hold lasts when the provider does not say (Stripe: 7 days online).
HOLD_DAYS = timedelta(days=7)


def is_hold(intent: ProviderPaymentIntent | None) -> bool:
    """Whether a completed, unpaid session's PaymentIntent holds money to capture."""
    return (
        intent is not None and intent.status == "requires_capture" and intent.amount_capturable > 0
    )


# States whose checkout has ended without its order being kept: money arriving for one of
# them is a late payment, refunded (flows/refunds.py; by the reconciler).
ENDED_UNKEPT = frozenset({"failed", "cleaned", "expired", "cancelled", "payment_failed"})


async def settle(
    conn: asyncpg.Connection,
    checkout: asyncpg.Record,
    session: ProviderSession,
    outcome: str,
    *,
    source: str,
    at: datetime,
    event_type: str | None = None,
    intent: ProviderPaymentIntent | None = None,
) -> str:
    """Move a checkout (row locked by the caller) to ``paid``, ``authorized`` (with the
    held ``intent``), ``expired`` or ``payment_failed``; the result.

    Safe to run many times for one session: a checkout already at its end is left as it
    is. A payment for a checkout that had ended is owed back: a refund is written with the
    payment, and the reconciler sends it.
    """
    checkout_id = checkout["checkout_id"]
    state = checkout["state"]
    if state in ("job_queued", "session_created"):
        if state == "job_queued":
            # The event beat the storefront's phase 3: link the session here, as phase 3
            # would; the storefront's own phase 3 then finds it linked and answers with
            # the stored body.
            state = await _link_early(conn, checkout, session, source)
        detail: dict[str, object] = {
            "session_id": session.id,
            "source": source,
            "payment_status": session.payment_status,
        }
        if event_type is not None:
            detail["event_type"] = event_type
        order_id = checkout["order_id"]
        # The order's event is written in the same transaction as its change (the outbox).
        if outcome == PAID:
            detail["payment_intent"] = session.payment_intent
            if await payments.mark_paid(
                conn,
                order_id,
                at,
                payment_intent=session.payment_intent,
                amount_cents=session.amount_total,
            ):
                await outbox.enqueue_order_event(conn, order_id, ORDER_PAID)
        elif outcome == AUTHORIZED:
            assert intent is not None
            detail |= {
                "payment_intent": intent.id,
                "amount_authorized_cents": intent.amount_capturable,
            }
            expires = (
                datetime.fromtimestamp(intent.capture_before, UTC)
                if intent.capture_before
                else at + HOLD_DAYS
            )
            if await captures.mark_authorized(
                conn,
                order_id,
                at,
                payment_intent=intent.id,
                amount_cents=intent.amount_capturable,
                expires_at=expires,
            ):
                await outbox.enqueue_order_event(conn, order_id, ORDER_AUTHORIZED)
        elif outcome == EXPIRED:
            if await payments.mark_expired(conn, order_id, at):
                await outbox.enqueue_order_event(conn, order_id, ORDER_EXPIRED)
        elif await payments.cancel_unpaid(conn, order_id, at):
            await outbox.enqueue_order_event(conn, order_id, ORDER_CANCELLED)
        event = _OUTCOME_EVENTS[outcome]
        target = TRANSITIONS.target(state, event, checkout_id=str(checkout_id))
        await write_transition(conn, checkout_id, event, state, target, detail=detail)
        return outcome
    if outcome == PAID and state in ENDED_UNKEPT:
        return await _late_payment(conn, checkout, session, source)
    await record_steps(
        conn,
        checkout_id,
        [Step.now("session.outcome_ignored", source=source, outcome=outcome, state=state)],
    )
    return f"already_{state}"


async def _late_payment(
    conn: asyncpg.Connection, checkout: asyncpg.Record, session: ProviderSession, source: str
) -> str:
    """Money arrived for a checkout whose order is gone: recorded, and owed back once."""
    checkout_id, state = checkout["checkout_id"], checkout["state"]
    owed = [
        r
        for r in await refunds_store.refunds_of(conn, checkout_id)
        if r["payment_intent"] == session.payment_intent
    ]
    if owed:
        await record_steps(
            conn,
            checkout_id,
            [Step.now("payment.late_again", source=source, session_id=session.id)],
        )
        return "refund_already_owed"
    await record_steps(
        conn,
        checkout_id,
        [
            Step.now(
                "payment.needs_refund",
                source=source,
                session_id=session.id,
                payment_intent=session.payment_intent,
                amount_cents=session.amount_total,
                state=state,
            )
        ],
    )
    await checkouts.insert_failure(
        conn,
        checkout_id,
        phase="payment",
        error_code="paid_after_cleanup",
        error_class="PaidAfterCleanup",
        message=f"session {session.id} was paid after the checkout ended {state}",
    )
    log.error("payment.needs_refund", session_id=session.id, state=state)
    if session.payment_intent is None or not session.amount_total:
        return "needs_refund"
    await refunds.owe(
        conn,
        checkout,
        cause="late_payment",
        reason="late_payment",
        note=f"paid after the checkout ended {state}",
        actor="reconciler",
        amount_cents=session.amount_total,
        currency=session.currency or "usd",
        payment_intent=session.payment_intent,
        lease_until=None,
    )
    return "needs_refund"


async def _link_early(
    conn: asyncpg.Connection, checkout: asyncpg.Record, session: ProviderSession, source: str
) -> str:
    """Phase 3's write, made by the event that beat it; the state it leaves the checkout in."""
    checkout_id, state = checkout["checkout_id"], checkout["state"]
    target = TRANSITIONS.target(state, CREATE_SESSION, checkout_id=str(checkout_id))
    at = utcnow()
    row = await checkouts.link_session(
        conn,
        checkout_id,
        source=state,
        target=target,
        at=at,
        session_id=session.id,
        job_id=checkout["job_id"],
        response_body=success_body(checkout_id, checkout["order_id"], checkout["job_id"], session),
        trace=[
            Step.now("session.linked_by_event", source=source, session_id=session.id).row(),
            transition_row(
                CREATE_SESSION, state, target, at, {"session_id": session.id, "source": source}
            ),
        ],
    )
    if not row["linked"]:
        raise IllegalTransition(
            f"checkout {checkout_id} is no longer in state {state}", checkout_id=str(checkout_id)
        )
    count_transition(target)
    return target
