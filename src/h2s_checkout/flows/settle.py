"""Apply a session's end (paid or expired) to its checkout: from a webhook or the reconciler."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from h2s_checkout.domain.errors import IllegalTransition
from h2s_checkout.domain.events import ORDER_EXPIRED, ORDER_PAID
from h2s_checkout.domain.machine import TRANSITIONS
from h2s_checkout.flows.begin_checkout import CREATE_SESSION, success_body
from h2s_checkout.logging import get_logger
from h2s_checkout.payments.port import ProviderSession
from h2s_checkout.store import checkouts, outbox, payments
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


async def settle(
    conn: asyncpg.Connection,
    checkout: asyncpg.Record,
    session: ProviderSession,
    outcome: str,
    *,
    source: str,
    at: datetime,
) -> str:
    """Move a checkout (row locked by the caller) to ``paid`` or ``expired``; the result.

    Safe to run many times for one session: a checkout already at its end is left as it
    is. A payment for a checkout that was cleaned up is recorded as needing a refund.
    """
    checkout_id = checkout["checkout_id"]
    state = checkout["state"]
    if state in ("job_queued", "session_created"):
        if state == "job_queued":
            # The event beat the storefront's phase 3: link the session here, as phase 3
            # would; the storefront's own phase 3 then finds it linked and answers with
            # the stored body.
            state = await _link_early(conn, checkout, session, source)
        detail = {
            "session_id": session.id,
            "source": source,
            "payment_status": session.payment_status,
        }
        order_id = checkout["order_id"]
        if outcome == PAID:
            if await payments.mark_paid(conn, order_id, at):
                await outbox.enqueue_order_event(conn, order_id, ORDER_PAID)  # same transaction
            event = "pay"
        else:
            if await payments.mark_expired(conn, order_id, at):
                await outbox.enqueue_order_event(conn, order_id, ORDER_EXPIRED)
            event = "expire"
        target = TRANSITIONS.target(state, event, checkout_id=str(checkout_id))
        await write_transition(conn, checkout_id, event, state, target, detail=detail)
        return outcome
    if outcome == PAID and state in ("failed", "cleaned", "expired"):
        # Money arrived for a checkout whose order is gone: a person must refund it.
        await record_steps(
            conn,
            checkout_id,
            [Step.now("payment.needs_refund", source=source, session_id=session.id)],
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
        return "needs_refund"
    await record_steps(
        conn,
        checkout_id,
        [Step.now("session.outcome_ignored", source=source, outcome=outcome, state=state)],
    )
    return f"already_{state}"


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
