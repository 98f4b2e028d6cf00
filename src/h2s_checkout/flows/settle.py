"""Apply a session's end (paid or expired) to its checkout: from a webhook or the reconciler."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from h2s_checkout.flows.begin_checkout import success_body
from h2s_checkout.flows.machine_io import bound_machine_at
from h2s_checkout.logging import get_logger
from h2s_checkout.payments.port import ProviderSession
from h2s_checkout.store import checkouts, payments
from h2s_checkout.store.traces import TraceWriter

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
    writer = TraceWriter(conn, checkout_id)
    if state in ("job_queued", "session_created"):
        bound = await bound_machine_at(state, writer)
        if state == "job_queued":
            # The event beat the storefront's phase 3: link the session here, as phase 3
            # would; the storefront's own phase 3 then finds it linked and answers with
            # the stored body.
            link = checkouts.SessionLinkWriter(
                conn,
                checkout_id,
                session_id=session.id,
                job_id=checkout["job_id"],
                response_body=success_body(
                    checkout_id, checkout["order_id"], checkout["job_id"], session
                ),
            )
            link.step("session.linked_by_event", source=source, session_id=session.id)
            await bound.write_with(link).send(
                "create_session", detail={"session_id": session.id, "source": source}
            )
        machine = bound.write_with(writer)
        detail = {
            "session_id": session.id,
            "source": source,
            "payment_status": session.payment_status,
        }
        if outcome == PAID:
            await payments.mark_paid(conn, checkout["order_id"], at)
            await machine.send("pay", detail=detail)
        else:
            await payments.mark_expired(conn, checkout["order_id"], at)
            await machine.send("expire", detail=detail)
        return outcome
    if outcome == PAID and state in ("failed", "cleaned", "expired"):
        # Money arrived for a checkout whose order is gone: a person must refund it.
        writer.step("payment.needs_refund", source=source, session_id=session.id)
        await writer.flush()
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
    writer.step("session.outcome_ignored", source=source, outcome=outcome, state=state)
    await writer.flush()
    return f"already_{state}"
