"""Refund part of a paid order, for either capture policy: at most what was captured less
what is refunded or on its way back, each part once.

The decision is one transaction under the checkout's row lock, so parts asked for at once
are counted against each other; each is a row of h2s_refunds (cause 'partial') with its
own Stripe idempotency key (h2s-refund-<order>-<attempt>), sent after the commit and
settled by the same ``apply_answer`` as a cancellation's refund (flows/refunds.py): the
order is partially_refunded until the whole amount is back, then refunded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from h2s_checkout.domain.errors import CheckoutError, IdempotencyKeyReused, NotFound
from h2s_checkout.flows import refunds
from h2s_checkout.flows.order_view import order_view
from h2s_checkout.observability.logging import bind_log_fields, get_logger
from h2s_checkout.payments.port import PaymentGateway
from h2s_checkout.store import refunds as refunds_store
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import Step, record_steps, utcnow

log = get_logger(__name__)

REFUND_KEY_SCOPE = "refund"
_REFUNDABLE = frozenset({"paid", "partially_refunded"})


class NotRefundable(CheckoutError):
    """The order holds no captured payment to refund part of."""

    code = "not_refundable"
    status = 409


class AmountExceedsRefundable(CheckoutError):
    code = "amount_exceeds_refundable"
    status = 422


@dataclass(frozen=True, slots=True)
class PartialRefundCommand:
    order_id: str
    amount_cents: int
    reason: str  # requested_by_customer, duplicate, fraudulent or other
    note: str | None
    actor: str
    idempotency_key: str | None = None
    request_fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class PartialRefundResult:
    status: int  # 202 while the part is on its way, else 200
    view: dict[str, Any]
    replayed: bool = False


class PartialRefunds:
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

    async def refund(self, command: PartialRefundCommand) -> PartialRefundResult:
        row, replayed = await self._decide(command)
        status_of_part = None
        if row is not None:
            answer = await refunds.send(self._pool, self._gateway, row, source="partial_refund")
            status_of_part = answer.status if answer is not None else "requested"
        view = await order_view(self._pool, command.order_id)
        log.info(
            "order.refund_part",
            order_id=command.order_id,
            amount_cents=command.amount_cents,
            state=view["state"],
            actor=command.actor,
            replayed=replayed,
        )
        # 202 while the part is on its way (the provider left it pending, or could not be
        # reached: the reconciler sends it); a replay answers with the order as it is.
        on_its_way = status_of_part in ("requested", "pending", "requires_action")
        return PartialRefundResult(202 if on_its_way else 200, view, replayed)

    async def _decide(self, command: PartialRefundCommand) -> tuple[asyncpg.Record | None, bool]:
        now = self._clock()
        async with connection(self._pool) as conn, conn.transaction():
            checkout = await refunds_store.lock_checkout_by_order(conn, command.order_id)
            if checkout is None:
                raise NotFound(f"no order {command.order_id!r}")
            checkout_id = checkout["checkout_id"]
            bind_log_fields(checkout_trace_id=str(checkout_id))
            if command.idempotency_key is not None:
                claim = await refunds_store.claim_request_key(
                    conn,
                    REFUND_KEY_SCOPE,
                    command.idempotency_key,
                    command.request_fingerprint,
                    command.order_id,
                )
                if claim == "other":
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used with a different request"
                    )
                if claim == "same":
                    return None, True
            state = checkout["state"]
            if state not in _REFUNDABLE or checkout["payment_intent"] is None:
                raise NotRefundable(
                    f"the order has no captured payment to refund in state {state}",
                    checkout_id=str(checkout_id),
                    state=state,
                )
            captured = checkout["amount_paid_cents"] or checkout["total_cents"]
            refunded, in_flight = await refunds_store.refunded_cents(conn, command.order_id)
            refundable = captured - refunded - in_flight
            if command.amount_cents > refundable:
                raise AmountExceedsRefundable(
                    f"{command.amount_cents} is more than the {refundable} left to refund "
                    f"({captured} captured, {refunded} refunded, {in_flight} on its way)",
                    checkout_id=str(checkout_id),
                    refundable_cents=refundable,
                )
            row = await refunds.owe(
                conn,
                checkout,
                cause="partial",
                reason=command.reason,
                note=command.note,
                actor=command.actor,
                amount_cents=command.amount_cents,
                currency=checkout["currency"],
                payment_intent=checkout["payment_intent"],
                lease_until=now + self._lease,
            )
            await record_steps(
                conn,
                checkout_id,
                [
                    Step.now(
                        "refund.part_requested",
                        refund_id=str(row["refund_id"]),
                        amount_cents=command.amount_cents,
                        refundable_cents=refundable,
                        reason=command.reason,
                        actor=command.actor,
                    )
                ],
            )
            return row, False
        raise AssertionError("unreachable")  # pragma: no cover
