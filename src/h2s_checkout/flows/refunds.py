"""Refunds: send one owed to the provider, and apply what the provider says of it.

A refund is owed (a row in h2s_refunds, 'requested') in the same transaction as the change
that owes it: a paid order's cancellation, or a payment that arrived for a checkout that
had already ended. It is then sent with its own idempotency key, by the request that owed
it, or by the reconciler if that request died or the provider failed; whatever the
provider answers, now or later in an event, goes through ``apply_answer``.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import asyncpg

from h2s_checkout.domain.events import (
    ORDER_REFUND_FAILED,
    ORDER_REFUNDED,
    ORDER_REFUNDED_PARTIALLY,
)
from h2s_checkout.domain.machine import TRANSITIONS
from h2s_checkout.observability.logging import bind_log_fields, get_logger
from h2s_checkout.observability.metrics import REFUNDS
from h2s_checkout.payments.port import (
    STRIPE_REFUND_REASONS,
    PaymentGateway,
    PaymentProviderFailure,
    ProviderRefund,
    RefundRequest,
)
from h2s_checkout.store import checkouts, outbox, payments, refunds
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import Step, record_steps, utcnow, write_transition

log = get_logger(__name__)

# What the provider's refund statuses mean for the checkout.
_SUCCEEDED = "succeeded"
_FAILED = frozenset({"failed", "canceled"})
_PENDING = "pending"
# The step and result when the provider's answer names no status.
UNKNOWN_YET = "status_unknown"


def refund_request(row: asyncpg.Record) -> RefundRequest:
    reason = row["reason"] if row["reason"] in STRIPE_REFUND_REASONS else None
    return RefundRequest(
        idempotency_key=row["idempotency_key"],
        payment_intent=row["payment_intent"],
        amount_cents=row["amount_cents"],
        reason=reason,
        metadata={
            "refund_id": str(row["refund_id"]),
            "order_id": row["order_id"],
            "checkout_trace_id": str(row["checkout_id"]),
            "cause": row["cause"],
        },
    )


async def send(
    pool: asyncpg.Pool, gateway: PaymentGateway, refund: asyncpg.Record, *, source: str
) -> ProviderRefund | None:
    """Create the refund at the provider (the same key every time) and apply its answer;
    None when the provider could not be reached or refused: the row stays 'requested' and
    the reconciler sends it again after its lease."""
    started = time.perf_counter()
    try:
        answer = await gateway.create_refund(refund_request(refund))
    except PaymentProviderFailure as failure:
        REFUNDS.labels("send_failed").inc()
        log.warning(
            "refund.send_failed",
            refund_id=str(refund["refund_id"]),
            provider_code=failure.provider_code,
            http_status=failure.http_status,
        )
        async with connection(pool) as conn, conn.transaction():
            await record_steps(
                conn,
                refund["checkout_id"],
                [
                    Step.now(
                        "refund.send_failed",
                        round((time.perf_counter() - started) * 1000, 3),
                        refund_id=str(refund["refund_id"]),
                        provider_code=failure.provider_code,
                        http_status=failure.http_status,
                        source=source,
                    )
                ],
            )
            await refunds.release(conn, refund["refund_id"])
        return None
    sent_ms = round((time.perf_counter() - started) * 1000, 3)
    async with connection(pool) as conn, conn.transaction():
        # Locks in the one order every path takes, checkout then refund: a cancel or a
        # partial refund holds the checkout while it reads the refunds, and settling
        # that took the refund first would wait on it while it waited here.
        await checkouts.get_checkout(conn, refund["checkout_id"], for_update=True)
        locked = await refunds.get_refund_for_update(conn, refund["refund_id"])
        assert locked is not None
        await record_steps(
            conn,
            refund["checkout_id"],
            [
                Step.now(
                    "stripe.refund_created",
                    sent_ms,
                    refund_id=str(refund["refund_id"]),
                    stripe_refund_id=answer.id,
                    status=answer.status,
                    amount_cents=answer.amount,
                    provider_request_id=answer.request_id,
                    source=source,
                )
            ],
        )
        await apply_answer(conn, locked, answer, source=source, at=utcnow())
    return answer


async def apply_answer(
    conn: asyncpg.Connection,
    refund: asyncpg.Record,
    answer: ProviderRefund,
    *,
    source: str,
    at: datetime,
) -> str:
    """Record the provider's view of a refund (row locked by the caller) and move the
    checkout when the refund ends: refunded, or refund_failed with the provider's reason.
    Safe to apply many times and in any order: a refund that ended stays ended."""
    if refund["status"] == _SUCCEEDED or refund["status"] in _FAILED:
        return f"already_{refund['status']}"  # an ended refund stays ended
    # No status: the provider has the refund (it has an id) but has not said how it
    # stands. It is sent, so pending as far as we know, and asked about again later.
    status = answer.status
    if status is None:
        status = _PENDING if refund["status"] == "requested" else refund["status"]
    if status == refund["status"] and answer.id == refund["stripe_refund_id"]:
        return f"already_{status}"  # nothing new (a repeated event)
    updated = await refunds.record_provider_answer(
        conn,
        refund["refund_id"],
        stripe_refund_id=answer.id,
        status=status,
        failure_reason=answer.failure_reason,
        at=at,
    )
    checkout = await checkouts.get_checkout(conn, refund["checkout_id"], for_update=True)
    assert checkout is not None
    detail = {
        "refund_id": str(refund["refund_id"]),
        "stripe_refund_id": answer.id,
        "amount_cents": answer.amount,
        "cause": refund["cause"],
        "source": source,
    }
    if answer.status == _SUCCEEDED:
        REFUNDS.labels("succeeded").inc()
        await _end(conn, checkout, "complete_refund", "refunded", at, detail)
        await record_steps(conn, checkout["checkout_id"], [Step.now("refund.succeeded", **detail)])
    elif answer.status in _FAILED:
        REFUNDS.labels("failed").inc()
        detail["failure_reason"] = updated["failure_reason"]
        log.error("refund.failed", **detail)
        await _end(conn, checkout, "fail_refund", "refund_failed", at, detail)
        await record_steps(conn, checkout["checkout_id"], [Step.now("refund.failed", **detail)])
    else:
        step = f"refund.{answer.status or UNKNOWN_YET}"
        await record_steps(conn, checkout["checkout_id"], [Step.now(step, **detail)])
    return answer.status or UNKNOWN_YET


async def _end(
    conn: asyncpg.Connection,
    checkout: asyncpg.Record,
    event: str,
    order_status: str,
    at: datetime,
    detail: dict[str, object],
) -> None:
    """A cancellation's refund ended: the checkout and its order follow. A partial refund
    that succeeded leaves the order partially_refunded, or refunded with the last part. A
    late payment's refund leaves its checkout where it ended (the timeline has the steps)."""
    if detail["cause"] == "partial":
        if event == "complete_refund" and checkout["state"] in ("paid", "partially_refunded"):
            await _part_back(conn, checkout, at, detail)
        return
    if detail["cause"] != "cancel" or checkout["state"] != "refund_pending":
        return
    target = TRANSITIONS.target(checkout["state"], event, checkout_id=str(checkout["checkout_id"]))
    await payments.set_order_status(
        conn, checkout["order_id"], old="refund_pending", new=order_status, at=at
    )
    await write_transition(
        conn, checkout["checkout_id"], event, checkout["state"], target, detail=detail
    )
    await outbox.enqueue_order_event(
        conn, checkout["order_id"], ORDER_REFUNDED if target == "refunded" else ORDER_REFUND_FAILED
    )


async def _part_back(
    conn: asyncpg.Connection, checkout: asyncpg.Record, at: datetime, detail: dict[str, object]
) -> None:
    order_id = checkout["order_id"]
    order = await checkouts.get_order(conn, order_id)
    assert order is not None
    refunded, _ = await refunds.refunded_cents(conn, order_id)
    whole = refunded >= (order["amount_paid_cents"] or order["total_cents"])
    event = "refund_rest" if whole else "refund_part"
    state = checkout["state"]
    target = TRANSITIONS.target(state, event, checkout_id=str(checkout["checkout_id"]))
    await payments.set_order_status(
        conn,
        order_id,
        old=order["status"],
        new="refunded" if whole else "partially_refunded",
        at=at,
    )
    await write_transition(
        conn,
        checkout["checkout_id"],
        event,
        state,
        target,
        detail=detail | {"amount_refunded_cents": refunded},
    )
    await outbox.enqueue_order_event(
        conn, order_id, ORDER_REFUNDED if whole else ORDER_REFUNDED_PARTIALLY
    )


async def owe(
    conn: asyncpg.Connection,
    checkout: asyncpg.Record,
    *,
    cause: str,
    reason: str,
    note: str | None,
    actor: str,
    amount_cents: int,
    currency: str,
    payment_intent: str,
    lease_until: datetime | None,
) -> asyncpg.Record:
    """Write a refund owed (inside the caller's transaction); sent after it commits."""
    row = await refunds.insert_refund(
        conn,
        refunds.NewRefund(
            refund_id=uuid.uuid4(),
            checkout_id=checkout["checkout_id"],
            order_id=checkout["order_id"],
            cause=cause,
            reason=reason,
            note=note,
            actor=actor,
            amount_cents=amount_cents,
            currency=currency,
            payment_intent=payment_intent,
            locked_until=lease_until,
        ),
    )
    REFUNDS.labels("requested").inc()
    bind_log_fields(refund_id=str(row["refund_id"]))
    return row
