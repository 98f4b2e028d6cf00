"""The Stripe adapter: Checkout Sessions through the official SDK, with bounded retries.

Requests go through the SDK's raw request API (its authentication, idempotency key,
errors and telemetry) and the answer is decoded by msgspec straight into the few fields
the service reads: building the SDK's typed objects only to copy five fields out of them
was a tenth of a checkout's CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import msgspec
import stripe

from h2s_checkout.observability.logging import get_logger
from h2s_checkout.observability.metrics import STRIPE_CALL_SECONDS
from h2s_checkout.payments import sdk_logging
from h2s_checkout.payments.port import (
    CaptureRequest,
    PaymentProviderFailure,
    ProviderPaymentIntent,
    ProviderRefund,
    ProviderSession,
    RefundRequest,
    SessionRequest,
)

log = get_logger(__name__)
T = TypeVar("T")

_SESSIONS = "/v1/checkout/sessions"
_REFUNDS = "/v1/refunds"
_PAYMENT_INTENTS = "/v1/payment_intents"


class _Session(msgspec.Struct):
    """The fields of a Checkout Session the service reads; the rest is not decoded."""

    id: str
    url: str | None = None
    status: str | None = None
    payment_status: str | None = None
    client_reference_id: str | None = None
    metadata: dict[str, Any] | None = None
    amount_total: int | None = None
    expires_at: int | None = None
    created: int | None = None
    payment_intent: str | None = None
    currency: str | None = None


class _Refund(msgspec.Struct):
    """The fields of a Refund the service reads."""

    id: str
    # Optional in the SDK's Refund (stripe 16): an answer may not say it yet.
    status: str | None = None
    amount: int = 0
    currency: str | None = None
    payment_intent: str | None = None
    failure_reason: str | None = None
    metadata: dict[str, Any] | None = None


class _Card(msgspec.Struct):
    capture_before: int | None = None


class _MethodDetails(msgspec.Struct):
    card: _Card | None = None


class _Charge(msgspec.Struct):
    payment_method_details: _MethodDetails | None = None


class _PaymentIntent(msgspec.Struct):
    """The fields of a PaymentIntent the service reads; ``latest_charge`` expanded."""

    id: str
    status: str | None = None
    amount: int = 0
    amount_capturable: int = 0
    amount_received: int = 0
    currency: str | None = None
    cancellation_reason: str | None = None
    metadata: dict[str, Any] | None = None
    latest_charge: _Charge | str | None = None


class _SessionList(msgspec.Struct):
    data: list[_Session]
    has_more: bool = False


_decode_session = msgspec.json.Decoder(_Session).decode
_decode_list = msgspec.json.Decoder(_SessionList).decode
_decode_refund = msgspec.json.Decoder(_Refund).decode
_decode_intent = msgspec.json.Decoder(_PaymentIntent).decode


def _provider_intent(p: _PaymentIntent, request_id: str | None = None) -> ProviderPaymentIntent:
    charge = p.latest_charge if isinstance(p.latest_charge, _Charge) else None
    card = charge.payment_method_details.card if charge and charge.payment_method_details else None
    return ProviderPaymentIntent(
        id=p.id,
        status=p.status,
        amount=p.amount,
        amount_capturable=p.amount_capturable,
        amount_received=p.amount_received,
        currency=p.currency,
        cancellation_reason=p.cancellation_reason,
        metadata={str(k): str(v) for k, v in (p.metadata or {}).items()},
        capture_before=card.capture_before if card else None,
        request_id=request_id,
    )


def payment_intent_from_dict(obj: dict[str, Any]) -> ProviderPaymentIntent:
    """A PaymentIntent as Stripe sends it in an event payload."""
    return _provider_intent(msgspec.convert(obj, _PaymentIntent))


def _provider_session(s: _Session, request_id: str | None = None) -> ProviderSession:
    return ProviderSession(
        id=s.id,
        url=s.url,
        status=s.status,
        payment_status=s.payment_status,
        client_reference_id=s.client_reference_id,
        metadata={str(k): str(v) for k, v in (s.metadata or {}).items()},
        amount_total=s.amount_total,
        expires_at=s.expires_at,
        request_id=request_id,
        created=s.created,
        payment_intent=s.payment_intent,
        currency=s.currency,
    )


def _provider_refund(r: _Refund, request_id: str | None = None) -> ProviderRefund:
    return ProviderRefund(
        id=r.id,
        status=r.status,
        amount=r.amount,
        currency=r.currency,
        payment_intent=r.payment_intent,
        failure_reason=r.failure_reason,
        metadata={str(k): str(v) for k, v in (r.metadata or {}).items()},
        request_id=request_id,
    )


def refund_from_dict(obj: dict[str, Any]) -> ProviderRefund:
    """A Refund as Stripe sends it in an event payload."""
    return _provider_refund(msgspec.convert(obj, _Refund))


def session_from_dict(obj: dict[str, Any], request_id: str | None = None) -> ProviderSession:
    """A Checkout Session as Stripe sends it in an event payload."""
    return _provider_session(msgspec.convert(obj, _Session), request_id)


def _payment_intent_data(request: SessionRequest) -> dict[str, Any]:
    data: dict[str, Any] = {"metadata": request.metadata}
    if request.capture_method != "automatic":
        data["capture_method"] = request.capture_method
    return data


def _failure(operation: str, exc: stripe.StripeError) -> PaymentProviderFailure:
    status = exc.http_status
    retry_after: float | None = None
    raw_retry = (exc.headers or {}).get("retry-after") or (exc.headers or {}).get("Retry-After")
    if raw_retry:
        try:
            retry_after = float(raw_retry)
        except ValueError:
            retry_after = None
    connection_lost = isinstance(exc, stripe.APIConnectionError)
    server_side = status is not None and status >= 500
    retryable = (
        connection_lost
        or server_side
        or isinstance(exc, stripe.RateLimitError)
        # Stripe answers 409 while a request with the same idempotency key still runs.
        or (status == 409)
    )
    return PaymentProviderFailure(
        str(exc.user_message or exc._message or type(exc).__name__),
        operation=operation,
        http_status=status,
        provider_code=exc.code or (exc.error.type if exc.error else None) or type(exc).__name__,
        request_id=exc.request_id,
        retryable=retryable,
        ambiguous=connection_lost or server_side,
        retry_after_s=retry_after,
    )


class StripeGateway:
    """PaymentGateway over ``stripe.StripeClient``.

    The SDK's own retries are off: ours cover 429 (which the SDK does not retry), honour
    ``Retry-After`` and stop at a total time budget so that a checkout never hangs. Every
    retry carries the same idempotency key, so Stripe acts once.
    """

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 2,
        budget_s: float = 20.0,
        initial_backoff_s: float = 0.25,
    ) -> None:
        sdk_logging.install()  # the SDK's log lines are formatted only when written
        self._http = stripe.AIOHTTPClient(timeout=timeout_s)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=0,
        )
        self._max_retries = max_retries
        self._budget_s = budget_s
        self._initial_backoff_s = initial_backoff_s

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self._budget_s
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                result = await call()
                STRIPE_CALL_SECONDS.labels(operation, "ok").observe(time.perf_counter() - started)
                return result
            except stripe.StripeError as exc:
                failure = _failure(operation, exc)
                STRIPE_CALL_SECONDS.labels(operation, failure.provider_code or "error").observe(
                    time.perf_counter() - started
                )
                attempt += 1
                delay = failure.retry_after_s or self._initial_backoff_s * 2 ** (attempt - 1)
                delay *= random.uniform(0.8, 1.2)  # jitter, so that retries of a crowd spread
                if (
                    not failure.retryable
                    or attempt > self._max_retries
                    or time.monotonic() + delay > deadline
                ):
                    raise failure from exc
                log.warning(
                    "stripe.retry",
                    operation=operation,
                    attempt=attempt,
                    http_status=failure.http_status,
                    provider_code=failure.provider_code,
                    delay_s=round(delay, 3),
                )
                await asyncio.sleep(delay)

    async def create_session(self, request: SessionRequest) -> ProviderSession:
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": request.client_reference_id,
            "customer_email": request.customer_email,
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "expires_at": int(request.expires_at.timestamp()),
            "metadata": request.metadata,
            "payment_intent_data": _payment_intent_data(request),
            "line_items": [
                {
                    "quantity": line.quantity,
                    "price_data": {
                        "currency": line.currency,
                        "unit_amount": line.unit_amount_cents,
                        "product_data": {"name": line.name},
                    },
                }
                for line in request.lines
            ],
        }
        answer = await self._call(
            "create_session",
            lambda: self._client.raw_request_async(
                "post", _SESSIONS, idempotency_key=request.idempotency_key, **params
            ),
        )
        return _provider_session(_decode_session(answer.body), answer.request_id)

    async def retrieve_session(self, session_id: str) -> ProviderSession:
        answer = await self._call(
            "retrieve_session",
            lambda: self._client.raw_request_async("get", f"{_SESSIONS}/{quote(session_id, '')}"),
        )
        return _provider_session(_decode_session(answer.body))

    async def expire_session(self, session_id: str) -> ProviderSession:
        answer = await self._call(
            "expire_session",
            lambda: self._client.raw_request_async(
                "post", f"{_SESSIONS}/{quote(session_id, '')}/expire"
            ),
        )
        return _provider_session(_decode_session(answer.body))

    async def create_refund(self, request: RefundRequest) -> ProviderRefund:
        params: dict[str, Any] = {
            "payment_intent": request.payment_intent,
            "amount": request.amount_cents,
            "metadata": request.metadata,
        }
        if request.reason is not None:
            params["reason"] = request.reason
        answer = await self._call(
            "create_refund",
            lambda: self._client.raw_request_async(
                "post", _REFUNDS, idempotency_key=request.idempotency_key, **params
            ),
        )
        return _provider_refund(_decode_refund(answer.body), answer.request_id)

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        answer = await self._call(
            "retrieve_refund",
            lambda: self._client.raw_request_async("get", f"{_REFUNDS}/{quote(refund_id, '')}"),
        )
        return _provider_refund(_decode_refund(answer.body))

    async def retrieve_payment_intent(self, payment_intent: str) -> ProviderPaymentIntent:
        path = f"{_PAYMENT_INTENTS}/{quote(payment_intent, '')}"
        answer = await self._call(
            "retrieve_payment_intent",
            lambda: self._client.raw_request_async("get", path, expand=["latest_charge"]),
        )
        return _provider_intent(_decode_intent(answer.body))

    async def capture_payment(self, request: CaptureRequest) -> ProviderPaymentIntent:
        path = f"{_PAYMENT_INTENTS}/{quote(request.payment_intent, '')}/capture"
        params: dict[str, Any] = {
            "amount_to_capture": request.amount_cents,
            "metadata": request.metadata,
        }
        answer = await self._call(
            "capture_payment",
            lambda: self._client.raw_request_async(
                "post", path, idempotency_key=request.idempotency_key, **params
            ),
        )
        return _provider_intent(_decode_intent(answer.body), answer.request_id)

    async def release_payment(
        self, payment_intent: str, *, idempotency_key: str, reason: str | None
    ) -> ProviderPaymentIntent:
        path = f"{_PAYMENT_INTENTS}/{quote(payment_intent, '')}/cancel"
        params: dict[str, Any] = {}
        if reason is not None:
            params["cancellation_reason"] = reason
        answer = await self._call(
            "release_payment",
            lambda: self._client.raw_request_async(
                "post", path, idempotency_key=idempotency_key, **params
            ),
        )
        return _provider_intent(_decode_intent(answer.body), answer.request_id)

    async def list_sessions(self, created_gte: int) -> AsyncIterator[ProviderSession]:
        """Sessions created since ``created_gte``, newest first, fetched 100 to a page.

        ``created[gte]`` narrows the list at Stripe; a provider that ignores it (the local
        emulator) still lists newest first, so paging stops at the first older session.
        """
        params: dict[str, Any] = {"limit": 100, "created": {"gte": created_gte}}
        while True:
            answer = await self._call(
                "list_sessions",
                lambda: self._client.raw_request_async("get", _SESSIONS, **params),
            )
            page = _decode_list(answer.body)
            last_id: str | None = None
            for found in page.data:
                session = _provider_session(found)
                if session.created is not None and session.created < created_gte:
                    return
                last_id = session.id
                yield session
            if not page.has_more or last_id is None:
                return
            params["starting_after"] = last_id

    async def close(self) -> None:
        await self._http.close_async()
