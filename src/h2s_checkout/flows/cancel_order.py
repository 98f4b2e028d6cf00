"""Cancel an order, exactly once: an unpaid one is cancelled with its session, a paid one
has its job cancelled at once and its payment refunded.

The decision and every local write are one transaction under the checkout's row lock, so
any number of cancels at once, on any replica, make one decision; the provider is called
after the commit (never inside a transaction), with an idempotency key that comes from the
order, and whatever it answers later is applied by the webhook or the reconciler.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from h2s_checkout.domain.errors import CheckoutError, IdempotencyKeyReused, NotFound
from h2s_checkout.domain.events import ORDER_CANCELLED, ORDER_REFUND_PENDING
from h2s_checkout.domain.machine import TRANSITIONS
from h2s_checkout.flows import refunds
from h2s_checkout.flows.capture import release_hold
from h2s_checkout.flows.order_view import order_view
from h2s_checkout.flows.settle import PAID, settle
from h2s_checkout.observability.logging import bind_log_fields, get_logger
from h2s_checkout.payments.port import PaymentGateway, PaymentProviderFailure
from h2s_checkout.store import captures, checkouts, outbox, payments
from h2s_checkout.store import refunds as refunds_store
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import Step, record_steps, utcnow, write_transition

log = get_logger(__name__)

CANCEL_KEY_SCOPE = "cancel"
# The states a cancel answers without doing anything: done, or a refund on its way.
_SETTLED = frozenset({"cancelled", "refunded", "refund_pending"})


class NotCancellable(CheckoutError):
    """The order ended without being kept, or its checkout is still running."""

    code = "not_cancellable"
    status = 409


@dataclass(frozen=True, slots=True)
class CancelCommand:
    order_id: str
    reason: str  # requested_by_customer, duplicate, fraudulent or other
    note: str | None
    actor: str
    idempotency_key: str | None = None
    request_fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class CancelResult:
    status: int  # 202 while a refund is on its way, else 200
    view: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class _Decision:
    """What the transaction decided the request must still do after its commit."""

    checkout_id: uuid.UUID
    expire_session: str | None = None
    refund: asyncpg.Record | None = None
    release_hold: str | None = None  # the payment intent whose hold goes back to the card


class OrderCancellation:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: PaymentGateway,
        *,
        lease: timedelta = timedelta(seconds=90),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._lease = lease
        self._clock = clock

    async def cancel(self, command: CancelCommand) -> CancelResult:
        decision, replayed = await self._decide(command)
        bind_log_fields(checkout_trace_id=str(decision.checkout_id))
        if decision.expire_session is not None:
            await self._expire_session(decision.checkout_id, decision.expire_session)
        if decision.refund is not None:
            await refunds.send(self._pool, self._gateway, decision.refund, source="cancel")
        if decision.release_hold is not None:
            await release_hold(
                self._pool,
                self._gateway,
                decision.checkout_id,
                decision.release_hold,
                order_id=command.order_id,
                reason=command.reason,
            )
        view = await order_view(self._pool, command.order_id)
        log.info(
            "order.cancel",
            order_id=command.order_id,
            state=view["state"],
            reason=command.reason,
            actor=command.actor,
            replayed=replayed,
        )
        # The status says what the body says: 202 only while the refund is on its way. A
        # refund the provider settled within this request is done (200, refunded), as is
        # one it refused at once (200, refund_failed: a later cancel tries again).
        status = 202 if view["state"] == "refund_pending" else 200
        return CancelResult(status, view, replayed)

    async def _decide(self, command: CancelCommand) -> tuple[_Decision, bool]:
        now = self._clock()
        async with connection(self._pool) as conn, conn.transaction():
            checkout = await refunds_store.lock_checkout_by_order(conn, command.order_id)
            if checkout is None:
                raise NotFound(f"no order {command.order_id!r}")
            checkout_id = checkout["checkout_id"]
            replayed = False
            if command.idempotency_key is not None:
                claim = await refunds_store.claim_request_key(
                    conn,
                    CANCEL_KEY_SCOPE,
                    command.idempotency_key,
                    command.request_fingerprint,
                    command.order_id,
                )
                if claim == "other":
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used with a different request"
                    )
                replayed = claim == "same"
            state = checkout["state"]
            if replayed or state in _SETTLED:
                return _Decision(checkout_id), replayed
            detail = {
                "reason": command.reason,
                "note": command.note,
                "actor": command.actor,
            }
            if state == "session_created":
                # Cancelled here first, so that the session's own expiry event (or a late
                # payment) finds the order cancelled; the session is expired after the
                # commit, and until that succeeds the reconciler owes it (needs_settlement).
                await payments.cancel_unpaid(conn, command.order_id, now)
                await checkouts.set_settlement(
                    conn, checkout_id, session_id=checkout["session_id"], needs_settlement=True
                )
                await _move(conn, checkout, "cancel", detail)
                await outbox.enqueue_order_event(conn, command.order_id, ORDER_CANCELLED)
                return _Decision(checkout_id, expire_session=checkout["session_id"]), False
            if state in ("authorized", "authorization_expired"):
                # Nothing was charged: the hold (if it still holds) goes back to the card
                # after the commit, and a complete that comes later finds the order
                # cancelled (409), as a cancel after a complete finds it capture_pending.
                await captures.cancel_authorized(conn, command.order_id, now)
                await _move(conn, checkout, "cancel", detail)
                await outbox.enqueue_order_event(conn, command.order_id, ORDER_CANCELLED)
                release = checkout["payment_intent"] if state == "authorized" else None
                return _Decision(checkout_id, release_hold=release), False
            if checkout["job_status"] == "completed":
                # The work is done (and, held, its payment captured): a cancel now would
                # undo a completion that already won. Money goes back as a refund.
                raise NotCancellable(
                    "the job is completed; refund the order with POST "
                    f"/api/orders/{command.order_id}/refunds",
                    checkout_id=str(checkout_id),
                    state=state,
                )
            if state in ("paid", "refund_failed", "partially_refunded"):
                if checkout["payment_intent"] is None:
                    raise NotCancellable(
                        "the payment of this order is not known to the service; refund it "
                        "at the payment provider",
                        checkout_id=str(checkout_id),
                        state=state,
                    )
                # What is left of the payment once partial refunds are counted.
                refunded, in_flight = await refunds_store.refunded_cents(conn, command.order_id)
                paid = checkout["amount_paid_cents"] or checkout["total_cents"]
                if paid - refunded - in_flight <= 0:
                    raise NotCancellable(
                        "the rest of the payment is already being refunded",
                        checkout_id=str(checkout_id),
                        state=state,
                    )
                refund = await refunds.owe(
                    conn,
                    checkout,
                    cause="cancel",
                    reason=command.reason,
                    note=command.note,
                    actor=command.actor,
                    amount_cents=paid - refunded - in_flight,
                    currency=checkout["currency"],
                    payment_intent=checkout["payment_intent"],
                    lease_until=now + self._lease,
                )
                await payments.mark_refund_pending(conn, command.order_id, now)
                event = "retry_refund" if state == "refund_failed" else "refund"
                detail |= {
                    "refund_id": str(refund["refund_id"]),
                    "amount_cents": refund["amount_cents"],
                    "attempt": refund["attempt"],
                }
                await _move(conn, checkout, event, detail)
                await outbox.enqueue_order_event(conn, command.order_id, ORDER_REFUND_PENDING)
                return _Decision(checkout_id, refund=refund), False
            # Raised inside the transaction: an Idempotency-Key claimed above is not kept.
            raise NotCancellable(
                f"the order cannot be cancelled in state {state}",
                checkout_id=str(checkout_id),
                state=state,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _expire_session(self, checkout_id: uuid.UUID, session_id: str) -> None:
        """The cancelled order's session must not stay payable. If it was paid just before
        the cancel, the payment is owed back (a late payment, refunded by the reconciler)."""
        steps: list[Step] = []
        settled = False
        paid = None
        try:
            session = await self._gateway.expire_session(session_id)
            steps.append(Step.now("stripe.session_expired", session_id=session_id))
            settled = session.status == "expired"
        except PaymentProviderFailure as failure:
            if failure.http_status == 400:
                # No longer open: it expired or was paid. Ask which.
                try:
                    session = await self._gateway.retrieve_session(session_id)
                    settled = True
                    if session.status == "complete" and session.payment_status == "paid":
                        paid = session
                except PaymentProviderFailure:
                    settled = False
            if not settled:
                steps.append(
                    Step.now(
                        "stripe.expire_failed",
                        session_id=session_id,
                        provider_code=failure.provider_code,
                        http_status=failure.http_status,
                    )
                )
        async with connection(self._pool) as conn, conn.transaction():
            current = await checkouts.get_checkout(conn, checkout_id, for_update=True)
            assert current is not None
            await record_steps(conn, checkout_id, steps)
            if paid is not None:
                await settle(conn, current, paid, PAID, source="cancel", at=self._clock())
            await checkouts.set_settlement(
                conn, checkout_id, session_id=session_id, needs_settlement=not settled
            )


async def _move(
    conn: asyncpg.Connection, checkout: asyncpg.Record, event: str, detail: dict[str, Any]
) -> None:
    state = checkout["state"]
    checkout_id = checkout["checkout_id"]
    target = TRANSITIONS.target(state, event, checkout_id=str(checkout_id))
    await write_transition(conn, checkout_id, event, state, target, detail=detail)
