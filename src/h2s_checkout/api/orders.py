"""Operators' actions on an order: cancel it (and refund it if it was paid, release its hold
if it was only held), refund part of it; and the order with its amounts, to read."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, Parameter
from msgspec import Meta

from h2s_checkout.api.auth import actor_of, require_scope
from h2s_checkout.api.checkout import IdempotencyKey
from h2s_checkout.api.keyed_answers import keyed_answer
from h2s_checkout.api.openapi import error_responses
from h2s_checkout.domain import keys
from h2s_checkout.domain.access import Scope
from h2s_checkout.flows.cancel_order import CancelCommand, OrderCancellation
from h2s_checkout.flows.order_view import order_view
from h2s_checkout.flows.partial_refunds import PartialRefundCommand, PartialRefunds

# A note may span lines; other control characters are refused, as everywhere.
Note = Annotated[
    str, Meta(max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$", description="Kept, not sent")
]
OrderId = Annotated[str, Parameter(pattern=r"^ORD-[0-9A-F]{16}$", description="The order's id")]


class CancelBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    reason: Literal["requested_by_customer", "duplicate", "fraudulent", "other"]
    note: Note | None = None


class PartialRefundBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    amount_cents: Annotated[int, Meta(ge=1, le=99_999_999)]
    reason: Literal["requested_by_customer", "duplicate", "fraudulent", "other"]
    note: Note | None = None


class OrderSummary(msgspec.Struct):
    order_id: str
    status: str
    total_cents: int
    amount_paid_cents: int | None
    currency: str


class OrderAmounts(msgspec.Struct):
    order_id: str
    status: str
    total_cents: int
    amount_paid_cents: int | None
    currency: str
    amount_authorized_cents: int | None
    authorization_expires_at: str | None
    amount_captured_cents: int
    amount_refunded_cents: int
    amount_refund_pending_cents: int
    amount_remaining_cents: int


class JobSummary(msgspec.Struct):
    job_id: str
    status: str


class JobDetail(msgspec.Struct):
    job_id: str
    status: str
    completed_at: str | None
    payment_flag: str | None


class CaptureSummary(msgspec.Struct):
    id: str
    amount_cents: int
    amount_captured_cents: int | None
    currency: str
    status: str
    failure_code: str | None
    note: str | None
    actor: str
    created_at: str


class RefundSummary(msgspec.Struct):
    id: str
    stripe_refund_id: str | None
    attempt: int
    cause: str
    reason: str
    amount_cents: int
    currency: str
    status: str
    failure_reason: str | None
    actor: str
    created_at: str


class CancelAnswer(msgspec.Struct):
    ok: bool
    checkout_trace_id: str
    state: str
    order: OrderSummary
    job: JobSummary | None
    refund: RefundSummary | None


class OrderAnswer(msgspec.Struct):
    ok: bool
    checkout_trace_id: str
    state: str
    capture_policy: str
    order: OrderAmounts
    job: JobDetail | None
    capture: CaptureSummary | None
    refund: RefundSummary | None
    refunds: list[RefundSummary]


class OrderReadController(Controller):
    path = "/api/orders"
    tags = ["orders"]
    guards = [require_scope(Scope.READ)]
    security = [{"BearerToken": []}]

    @get(
        "/{order_id:str}",
        summary="An order: its state, amounts held, captured, refunded and remaining",
        responses=error_responses(400, 401, 403, 404, 503),
    )
    async def order(self, order_id: OrderId, db_pool: NamedDependency[asyncpg.Pool]) -> OrderAnswer:
        return msgspec.convert(await order_view(db_pool, order_id), OrderAnswer)


class OrderController(Controller):
    path = "/api/orders"
    tags = ["orders"]
    guards = [require_scope(Scope.OPERATE)]
    security = [{"BearerToken": []}]

    @post(
        "/{order_id:str}/cancel",
        summary="Cancel an order: expire its unpaid session, or cancel its job and refund it",
        description=(
            "Unpaid (session open): the session is expired at the provider, the order and "
            "its job are cancelled: 200, state cancelled. Paid: the job is cancelled at once "
            "and the payment refunded through the provider: 202 while the refund is pending, "
            "200 once refunded. Already cancelled, refunded or refund pending: the current "
            "state, nothing done twice. Expired, cleaned, payment failed or still running: "
            "409 not_cancellable."
        ),
        status_code=200,
        responses={
            202: ResponseSpec(CancelAnswer, description="Refund pending at the provider"),
            **error_responses(400, 401, 403, 404, 409, 422, 503),
        },
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        order_id: OrderId,
        data: JSONBody[CancelBody],
        order_cancellation: NamedDependency[OrderCancellation],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CancelAnswer]:
        body = msgspec.to_builtins(data)
        result = await order_cancellation.cancel(
            CancelCommand(
                order_id=order_id,
                reason=data.reason,
                note=data.note,
                actor=actor_of(request),
                idempotency_key=idempotency_key,
                request_fingerprint=keys.request_digest({"order_id": order_id, "body": body}),
            )
        )
        return keyed_answer(result, CancelAnswer)

    @post(
        "/{order_id:str}/refunds",
        summary="Refund part of a paid order",
        description=(
            "amount_cents is at most what was captured less what is refunded or on its way "
            "back (422 amount_exceeds_refundable); several may follow one another. Each is "
            "created once at the provider with a key of its own: 200 once settled, 202 "
            "while it is on its way. The order is partially_refunded until the whole "
            "amount is back, then refunded. Not paid (or being refunded in full): 409 "
            "not_refundable."
        ),
        status_code=200,
        responses={
            202: ResponseSpec(OrderAnswer, description="The refund is on its way"),
            **error_responses(400, 401, 403, 404, 409, 422, 503),
        },
    )
    async def refund_part(
        self,
        request: Request[Any, Any, Any],
        order_id: OrderId,
        data: JSONBody[PartialRefundBody],
        partial_refunds: NamedDependency[PartialRefunds],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[OrderAnswer]:
        body = msgspec.to_builtins(data)
        result = await partial_refunds.refund(
            PartialRefundCommand(
                order_id=order_id,
                amount_cents=data.amount_cents,
                reason=data.reason,
                note=data.note,
                actor=actor_of(request),
                idempotency_key=idempotency_key,
                request_fingerprint=keys.request_digest({"order_id": order_id, "body": body}),
            )
        )
        return keyed_answer(result, OrderAnswer)
