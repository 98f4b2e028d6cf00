"""Operators' actions on an order: cancel it (and refund it if it was paid)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, MediaType, Request, Response, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, Parameter
from msgspec import Meta

from h2s_checkout.api.auth import actor_of, require_scope
from h2s_checkout.api.checkout import IdempotencyKey
from h2s_checkout.api.openapi import error_responses
from h2s_checkout.domain import keys
from h2s_checkout.domain.access import Scope
from h2s_checkout.flows.cancel_order import CancelCommand, OrderCancellation

# A note may span lines; other control characters are refused, as everywhere.
Note = Annotated[
    str, Meta(max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$", description="Kept, not sent")
]
OrderId = Annotated[str, Parameter(pattern=r"^ORD-[0-9A-F]{16}$", description="The order's id")]


class CancelBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    reason: Literal["requested_by_customer", "duplicate", "fraudulent", "other"]
    note: Note | None = None


class OrderSummary(msgspec.Struct):
    order_id: str
    status: str
    total_cents: int
    amount_paid_cents: int | None
    currency: str


class JobSummary(msgspec.Struct):
    job_id: str
    status: str


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
        headers = {"Idempotent-Replayed": "true"} if result.replayed else None
        return Response(
            msgspec.convert(result.view, CancelAnswer),
            status_code=result.status,
            headers=headers,
            media_type=MediaType.JSON,
        )
