"""Pay when the job is done: complete a job and capture its held payment exactly once;
apply a hold that lapsed.

Completing is one transaction under the checkout's row lock: the job completed, the
capture owed (one h2s_captures row per order, its Stripe idempotency key from the row),
authorized -> capture_pending. The provider is called after the commit, by the request or,
if it died or the provider failed, by the reconciler, always with the same key; its answer
ends the capture (capture_pending -> paid for the amount captured) in another transaction
under the same lock. A cancel racing a complete takes the same lock: one of them finds the
state the other left, and answers 409 with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from h2s_checkout.domain.errors import CheckoutError, IdempotencyKeyReused, NotFound
from h2s_checkout.domain.events import (
    JOB_COMPLETED,
    ORDER_AUTHORIZATION_EXPIRED,
    ORDER_CAPTURED,
)
from h2s_checkout.domain.machine import TRANSITIONS
from h2s_checkout.flows.order_view import order_view
from h2s_checkout.observability.logging import bind_log_fields, get_logger
from h2s_checkout.payments.port import (
    CaptureRequest,
    PaymentGateway,
    PaymentProviderFailure,
    ProviderPaymentIntent,
)
from h2s_checkout.store import captures, checkouts, outbox
from h2s_checkout.store import refunds as refunds_store
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import Step, record_steps, utcnow, write_transition

log = get_logger(__name__)

COMPLETE_KEY_SCOPE = "complete"
# A capture is owed in these states: its answer is still to come, or it came.
_COMPLETED_STATES = frozenset(
    {"capture_pending", "paid", "partially_refunded", "refund_pending", "refunded", "refund_failed"}
)


class NotCompletable(CheckoutError):
    """The job's order holds no payment to capture (unpaid, cancelled, lapsed, ...)."""

    code = "not_completable"
    status = 409


class AmountExceedsAuthorization(CheckoutError):
    """More than the card holds; an extra charge is a new checkout."""

    code = "amount_exceeds_authorization"
    status = 422


@dataclass(frozen=True, slots=True)
class CompleteCommand:
    job_id: uuid.UUID
    final_amount_cents: int | None
    note: str | None
    actor: str
    idempotency_key: str | None = None
    request_fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class CompleteResult:
    status: int  # 202 while the capture is not confirmed, else 200
    view: dict[str, Any]
    replayed: bool = False


class JobCompletion:
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

    async def complete(self, command: CompleteCommand) -> CompleteResult:
        order_id, capture, replayed = await self._decide(command)
        if capture is not None:
            await send_capture(self._pool, self._gateway, capture, source="complete")
        view = await order_view(self._pool, order_id)
        log.info(
            "job.complete",
            job_id=str(command.job_id),
            order_id=order_id,
            state=view["state"],
            actor=command.actor,
            replayed=replayed,
        )
        status = 202 if view["state"] == "capture_pending" else 200
        return CompleteResult(status, view, replayed)

    async def _decide(self, command: CompleteCommand) -> tuple[str, asyncpg.Record | None, bool]:
        now = self._clock()
        async with connection(self._pool) as conn, conn.transaction():
            checkout = await captures.lock_checkout_by_job(conn, command.job_id)
            if checkout is None:
                raise NotFound(f"no job {command.job_id}")
            checkout_id, order_id = checkout["checkout_id"], checkout["order_id"]
            bind_log_fields(checkout_trace_id=str(checkout_id))
            if command.idempotency_key is not None:
                claim = await refunds_store.claim_request_key(
                    conn,
                    COMPLETE_KEY_SCOPE,
                    command.idempotency_key,
                    command.request_fingerprint,
                    order_id,
                )
                if claim == "other":
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used with a different request"
                    )
                if claim == "same":
                    return order_id, None, True
            state = checkout["state"]
            found = await captures.order_and_job(conn, order_id)
            if state in _COMPLETED_STATES and found["job_status"] == "completed":
                # Completed before: the first complete's answer, and a capture it left owed
                # (its request died) is sent again if nobody is sending it now.
                owed = await captures.capture_of_order(conn, order_id)
                if owed is not None and owed["status"] == "requested":
                    owed = await captures.lease_capture(
                        conn, owed["capture_id"], now=now, until=now + self._lease
                    )
                    return order_id, owed, True
                return order_id, None, True
            if state == "paid" and checkout["capture_policy"] == "at_booking":
                # Charged at booking: completing the job moves no money.
                await captures.mark_job_completed(conn, found["job_id"], now)
                await record_steps(
                    conn,
                    checkout_id,
                    [Step.now("job.completed", actor=command.actor, note=command.note)],
                )
                await outbox.enqueue_order_event(conn, order_id, JOB_COMPLETED)
                return order_id, None, False
            if state != "authorized":
                raise NotCompletable(
                    f"the job's order holds no payment to capture in state {state}",
                    checkout_id=str(checkout_id),
                    state=state,
                )
            held = found["amount_authorized_cents"]
            amount = held if command.final_amount_cents is None else command.final_amount_cents
            if amount > held:
                raise AmountExceedsAuthorization(
                    f"{amount} is more than the {held} the card holds; charge the rest on a "
                    "new checkout",
                    checkout_id=str(checkout_id),
                    amount_authorized_cents=held,
                )
            capture = await captures.insert_capture(
                conn,
                checkout_id=checkout_id,
                order_id=order_id,
                job_id=found["job_id"],
                amount_cents=amount,
                currency=found["currency"],
                payment_intent=found["payment_intent"],
                note=command.note,
                actor=command.actor,
                locked_until=now + self._lease,
            )
            await captures.mark_job_completed(conn, found["job_id"], now)
            target = TRANSITIONS.target(state, "complete_job", checkout_id=str(checkout_id))
            await write_transition(
                conn,
                checkout_id,
                "complete_job",
                state,
                target,
                detail={
                    "capture_id": str(capture["capture_id"]),
                    "amount_cents": amount,
                    "amount_authorized_cents": held,
                    "actor": command.actor,
                    "note": command.note,
                },
            )
            await outbox.enqueue_order_event(conn, order_id, JOB_COMPLETED)
            return order_id, capture, False
        raise AssertionError("unreachable")  # pragma: no cover


def capture_request(row: asyncpg.Record) -> CaptureRequest:
    return CaptureRequest(
        idempotency_key=row["idempotency_key"],
        payment_intent=row["payment_intent"],
        amount_cents=row["amount_cents"],
        metadata={
            "capture_id": str(row["capture_id"]),
            "order_id": row["order_id"],
            "checkout_trace_id": str(row["checkout_id"]),
        },
    )


async def send_capture(
    pool: asyncpg.Pool, gateway: PaymentGateway, capture: asyncpg.Record, *, source: str
) -> str:
    """Capture at the provider (the same key every time) and apply its answer; the result.
    When the provider cannot be reached the capture stays owed for the reconciler."""
    try:
        answer = await gateway.capture_payment(capture_request(capture))
    except PaymentProviderFailure as failure:
        if failure.http_status == 400 and failure.provider_code in (
            "payment_intent_unexpected_state",
            "amount_too_large",
        ):
            # Refused for good: ask what became of the hold (captured by an earlier try
            # whose answer was lost past the key's life, released, or lapsed).
            found: ProviderPaymentIntent | None
            try:
                found = await gateway.retrieve_payment_intent(capture["payment_intent"])
            except PaymentProviderFailure:
                found = None
            if found is not None:
                return await _apply_in_transaction(pool, capture, found, source)
        log.warning(
            "capture.send_failed",
            capture_id=str(capture["capture_id"]),
            provider_code=failure.provider_code,
            http_status=failure.http_status,
        )
        async with connection(pool) as conn, conn.transaction():
            await record_steps(
                conn,
                capture["checkout_id"],
                [
                    Step.now(
                        "capture.send_failed",
                        capture_id=str(capture["capture_id"]),
                        provider_code=failure.provider_code,
                        http_status=failure.http_status,
                        source=source,
                    )
                ],
            )
            await captures.release_capture(conn, capture["capture_id"])
        return "send_failed"
    return await _apply_in_transaction(pool, capture, answer, source)


async def _apply_in_transaction(
    pool: asyncpg.Pool, capture: asyncpg.Record, answer: ProviderPaymentIntent, source: str
) -> str:
    async with connection(pool) as conn, conn.transaction():
        checkout = await checkouts.get_checkout(conn, capture["checkout_id"], for_update=True)
        assert checkout is not None
        return await apply_capture_answer(conn, checkout, capture, answer, source=source)


async def apply_capture_answer(
    conn: asyncpg.Connection,
    checkout: asyncpg.Record,
    capture: asyncpg.Record,
    answer: ProviderPaymentIntent,
    *,
    source: str,
    at: datetime | None = None,
) -> str:
    """The provider's word on a capture (checkout row locked by the caller): captured, the
    order paid for what was taken; the hold gone, the order authorization_expired."""
    at = at or utcnow()
    checkout_id, order_id = checkout["checkout_id"], checkout["order_id"]
    detail: dict[str, Any] = {
        "capture_id": str(capture["capture_id"]),
        "payment_intent": answer.id,
        "status": answer.status,
        "source": source,
        "provider_request_id": answer.request_id,
    }
    if answer.status == "succeeded":
        ended = await captures.record_capture(
            conn,
            capture["capture_id"],
            status="succeeded",
            amount_captured_cents=answer.amount_received,
            failure_code=None,
            at=at,
        )
        if ended is None or checkout["state"] != "capture_pending":
            return "already_captured"
        detail["amount_captured_cents"] = answer.amount_received
        await captures.mark_captured(conn, order_id, at, amount_cents=answer.amount_received)
        target = TRANSITIONS.target(checkout["state"], "capture", checkout_id=str(checkout_id))
        await write_transition(
            conn, checkout_id, "capture", checkout["state"], target, detail=detail
        )
        await outbox.enqueue_order_event(conn, order_id, ORDER_CAPTURED)
        return "captured"
    if answer.status == "canceled":
        await captures.record_capture(
            conn,
            capture["capture_id"],
            status="failed",
            amount_captured_cents=None,
            failure_code=answer.cancellation_reason or "canceled",
            at=at,
        )
        return await apply_lapse(conn, checkout, answer, source=source, at=at)
    await record_steps(conn, checkout_id, [Step.now("capture.pending", **detail)])
    await captures.release_capture(conn, capture["capture_id"])
    return answer.status or "status_unknown"


async def apply_lapse(
    conn: asyncpg.Connection,
    checkout: asyncpg.Record,
    intent: ProviderPaymentIntent,
    *,
    source: str,
    at: datetime | None = None,
) -> str:
    """A hold the provider let go before it was captured (checkout row locked by the
    caller): the order authorization_expired and its job flagged for staff. A release we
    asked for ourselves (a cancel) finds the order cancelled and changes nothing."""
    at = at or utcnow()
    state, checkout_id = checkout["state"], checkout["checkout_id"]
    if state not in ("authorized", "capture_pending"):
        await record_steps(
            conn,
            checkout_id,
            [
                Step.now(
                    "hold.released",
                    payment_intent=intent.id,
                    cancellation_reason=intent.cancellation_reason,
                    state=state,
                    source=source,
                )
            ],
        )
        return f"already_{state}"
    if state == "capture_pending":
        # The capture owed can no longer be made.
        owed = await captures.capture_of_order(conn, checkout["order_id"])
        if owed is not None:
            await captures.record_capture(
                conn,
                owed["capture_id"],
                status="failed",
                amount_captured_cents=None,
                failure_code=intent.cancellation_reason or "canceled",
                at=at,
            )
    await captures.mark_authorization_expired(conn, checkout["order_id"], at)
    # A capture_pending order's status is still authorized, so the same update serves.
    target = TRANSITIONS.target(state, "lapse", checkout_id=str(checkout_id))
    await write_transition(
        conn,
        checkout_id,
        "lapse",
        state,
        target,
        detail={
            "payment_intent": intent.id,
            "cancellation_reason": intent.cancellation_reason,
            "source": source,
        },
    )
    await outbox.enqueue_order_event(conn, checkout["order_id"], ORDER_AUTHORIZATION_EXPIRED)
    log.warning("hold.lapsed", checkout_trace_id=str(checkout_id), payment_intent=intent.id)
    return "authorization_expired"


async def release_hold(
    pool: asyncpg.Pool,
    gateway: PaymentGateway,
    checkout_id: uuid.UUID,
    payment_intent: str,
    *,
    order_id: str,
    reason: str | None,
) -> None:
    """Give a cancelled order's hold back to the card (after the cancel committed). If the
    provider fails the step says so; the hold lapses by itself within days, never charged."""
    stripe_reason = (
        reason
        if reason in ("requested_by_customer", "duplicate", "fraudulent", "abandoned")
        else None
    )
    try:
        intent = await gateway.release_payment(
            payment_intent, idempotency_key=f"h2s-release-{order_id}", reason=stripe_reason
        )
        step = Step.now("stripe.hold_released", payment_intent=payment_intent, status=intent.status)
    except PaymentProviderFailure as failure:
        step = Step.now(
            "stripe.release_failed",
            payment_intent=payment_intent,
            provider_code=failure.provider_code,
            http_status=failure.http_status,
        )
        log.warning("hold.release_failed", payment_intent=payment_intent)
    async with connection(pool) as conn:
        await record_steps(conn, checkout_id, [step])
