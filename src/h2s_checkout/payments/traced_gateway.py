"""With tracing on, the payment gateway behind a client span per call.

Each span names the operation (``rpc.method``), the row of ours its idempotency key comes from (the
checkout's or the refund's: ``h2s.stripe.idempotency_key_row``), the answer's HTTP status
and Stripe's request id. The gateway's own retries of one call are inside its span (their
``stripe.retry`` log lines carry its ids). Wrapped only when tracing is on (bootstrap.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlparse

from h2s_checkout.observability import tracing
from h2s_checkout.payments.port import (
    CaptureRequest,
    PaymentGateway,
    PaymentProviderFailure,
    ProviderPaymentIntent,
    ProviderRefund,
    ProviderSession,
    RefundRequest,
    SessionRequest,
)

T = TypeVar("T", ProviderSession, ProviderRefund, ProviderPaymentIntent)


class TracedGateway:
    """PaymentGateway around another, each call in a span of its own."""

    def __init__(self, inner: PaymentGateway, *, api_base: str | None = None) -> None:
        self._inner = inner
        self._server = urlparse(api_base).hostname if api_base else "api.stripe.com"

    async def _traced(
        self, operation: str, attributes: Mapping[str, Any], call: Callable[[], Awaitable[T]]
    ) -> T:
        with tracing.span(
            f"stripe {operation}",
            kind="client",
            attributes={
                "rpc.system.name": "stripe",
                "rpc.method": operation,
                "server.address": self._server,
                **attributes,
            },
        ) as span:
            try:
                answer = await call()
            except PaymentProviderFailure as failure:
                span.set(
                    {
                        "http.response.status_code": failure.http_status,
                        "h2s.stripe.request_id": failure.request_id,
                        "h2s.stripe.error_code": failure.provider_code,
                        "h2s.stripe.ambiguous": failure.ambiguous,
                    }
                )
                raise
            span.set({"http.response.status_code": 200, "h2s.stripe.request_id": answer.request_id})
            return answer

    async def create_session(self, request: SessionRequest) -> ProviderSession:
        return await self._traced(
            "create_session",
            {
                "h2s.stripe.idempotency_key": request.idempotency_key,
                "h2s.stripe.idempotency_key_row": _row(
                    "h2s_checkouts", request.metadata.get("checkout_trace_id")
                ),
                "h2s.checkout_trace_id": request.metadata.get("checkout_trace_id"),
                "h2s.order_id": request.client_reference_id,
            },
            lambda: self._inner.create_session(request),
        )

    async def retrieve_session(self, session_id: str) -> ProviderSession:
        return await self._traced(
            "retrieve_session",
            {"h2s.stripe.session_id": session_id},
            lambda: self._inner.retrieve_session(session_id),
        )

    async def expire_session(self, session_id: str) -> ProviderSession:
        return await self._traced(
            "expire_session",
            {"h2s.stripe.session_id": session_id},
            lambda: self._inner.expire_session(session_id),
        )

    async def create_refund(self, request: RefundRequest) -> ProviderRefund:
        return await self._traced(
            "create_refund",
            {
                "h2s.stripe.idempotency_key": request.idempotency_key,
                "h2s.stripe.idempotency_key_row": _row(
                    "h2s_refunds", request.metadata.get("refund_id")
                ),
                "h2s.checkout_trace_id": request.metadata.get("checkout_trace_id"),
                "h2s.order_id": request.metadata.get("order_id"),
            },
            lambda: self._inner.create_refund(request),
        )

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        return await self._traced(
            "retrieve_refund",
            {"h2s.stripe.refund_id": refund_id},
            lambda: self._inner.retrieve_refund(refund_id),
        )

    async def retrieve_payment_intent(self, payment_intent: str) -> ProviderPaymentIntent:
        return await self._traced(
            "retrieve_payment_intent",
            {"h2s.stripe.payment_intent": payment_intent},
            lambda: self._inner.retrieve_payment_intent(payment_intent),
        )

    async def capture_payment(self, request: CaptureRequest) -> ProviderPaymentIntent:
        order_id = request.metadata.get("order_id")
        return await self._traced(
            "capture_payment",
            {
                "h2s.stripe.idempotency_key": request.idempotency_key,
                "h2s.stripe.idempotency_key_row": _row(
                    "h2s_captures", request.metadata.get("capture_id")
                ),
                "h2s.stripe.payment_intent": request.payment_intent,
                "h2s.checkout_trace_id": request.metadata.get("checkout_trace_id"),
                "h2s.order_id": order_id,
            },
            lambda: self._inner.capture_payment(request),
        )

    async def release_payment(
        self, payment_intent: str, *, idempotency_key: str, reason: str | None
    ) -> ProviderPaymentIntent:
        return await self._traced(
            "release_payment",
            {
                "h2s.stripe.idempotency_key": idempotency_key,
                "h2s.stripe.payment_intent": payment_intent,
            },
            lambda: self._inner.release_payment(
                payment_intent, idempotency_key=idempotency_key, reason=reason
            ),
        )

    def list_sessions(self, created_gte: int) -> AsyncIterator[ProviderSession]:
        # Not in a span: a span current across an async generator's yields would be
        # current in its caller meanwhile, and is ended wherever the caller lets go of it.
        # Only the doctor lists sessions.
        return self._inner.list_sessions(created_gte)

    async def close(self) -> None:
        await self._inner.close()


def _row(table: str, key: str | None) -> str | None:
    return None if key is None else f"{table}/{key}"
