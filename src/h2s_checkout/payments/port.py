"""The payment port: what the flows need from a payment provider, in domain terms."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class SessionLine:
    name: str
    unit_amount_cents: int
    quantity: int
    currency: str


@dataclass(frozen=True, slots=True)
class SessionRequest:
    idempotency_key: str
    client_reference_id: str
    customer_email: str
    lines: tuple[SessionLine, ...]
    success_url: str
    cancel_url: str
    expires_at: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    # "manual": the payment is held, not captured (H2S_CAPTURE=on_completion).
    capture_method: str = "automatic"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, stored so that a resumed attempt sends the same request.
        A held payment says so (capture_method: manual), which is how the checkout row
        keeps its capture policy (h2s_checkouts.capture_policy); an automatic one stores
        what it stored before."""
        stored: dict[str, Any] = {
            "idempotency_key": self.idempotency_key,
            "client_reference_id": self.client_reference_id,
            "customer_email": self.customer_email,
            "lines": [
                {
                    "name": line.name,
                    "unit_amount_cents": line.unit_amount_cents,
                    "quantity": line.quantity,
                    "currency": line.currency,
                }
                for line in self.lines
            ],
            "success_url": self.success_url,
            "cancel_url": self.cancel_url,
            "expires_at": self.expires_at.isoformat(),
            "metadata": dict(self.metadata),
        }
        if self.capture_method != "automatic":
            stored["capture_method"] = self.capture_method
        return stored

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionRequest:
        return cls(
            idempotency_key=data["idempotency_key"],
            client_reference_id=data["client_reference_id"],
            customer_email=data["customer_email"],
            lines=tuple(SessionLine(**line) for line in data["lines"]),
            success_url=data["success_url"],
            cancel_url=data["cancel_url"],
            expires_at=datetime.fromisoformat(data["expires_at"]),
            metadata=dict(data["metadata"]),
            capture_method=data.get("capture_method", "automatic"),
        )


@dataclass(frozen=True, slots=True)
class ProviderSession:
    id: str
    url: str | None
    status: str | None
    payment_status: str | None
    client_reference_id: str | None
    metadata: dict[str, str]
    amount_total: int | None
    expires_at: int | None
    request_id: str | None = None
    created: int | None = None
    # Set once the session is paid: what a refund is made on.
    payment_intent: str | None = None
    currency: str | None = None


# Stripe's refund reasons; ours may also be "other", which is kept but not sent.
STRIPE_REFUND_REASONS = frozenset({"requested_by_customer", "duplicate", "fraudulent"})


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """A refund of a payment, keyed so that every retry reaches the same refund."""

    idempotency_key: str
    payment_intent: str
    amount_cents: int
    reason: str | None  # one of STRIPE_REFUND_REASONS, or None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    id: str
    # pending, requires_action, succeeded, failed or canceled; None: not said yet (the
    # SDK declares it optional), which the refund flow records as still pending
    status: str | None
    amount: int
    currency: str | None
    payment_intent: str | None
    failure_reason: str | None
    metadata: dict[str, str]
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderPaymentIntent:
    """What the flows read of a PaymentIntent: whether it holds money, took it, or let it go."""

    id: str
    # requires_capture (held), succeeded (captured), canceled (released or lapsed), ...
    status: str | None
    amount: int
    amount_capturable: int
    amount_received: int
    currency: str | None
    cancellation_reason: str | None
    metadata: dict[str, str]
    # Until when a hold can be captured (the card's capture_before), Unix seconds.
    capture_before: int | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """Capture of a held payment, keyed so that every retry reaches the same capture."""

    idempotency_key: str
    payment_intent: str
    amount_cents: int
    metadata: dict[str, str] = field(default_factory=dict)


class PaymentProviderFailure(Exception):
    """A provider call that did not succeed.

    ``ambiguous`` means the provider may have acted (a timeout, a dropped connection):
    the same idempotency key must be replayed before anything is assumed.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        http_status: int | None = None,
        provider_code: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        ambiguous: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.http_status = http_status
        self.provider_code = provider_code
        self.request_id = request_id
        self.retryable = retryable
        self.ambiguous = ambiguous
        self.retry_after_s = retry_after_s


class PaymentGateway(Protocol):
    async def create_session(self, request: SessionRequest) -> ProviderSession: ...

    async def retrieve_session(self, session_id: str) -> ProviderSession: ...

    async def expire_session(self, session_id: str) -> ProviderSession: ...

    async def create_refund(self, request: RefundRequest) -> ProviderRefund: ...

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund: ...

    async def retrieve_payment_intent(self, payment_intent: str) -> ProviderPaymentIntent: ...

    async def capture_payment(self, request: CaptureRequest) -> ProviderPaymentIntent: ...

    async def release_payment(
        self, payment_intent: str, *, idempotency_key: str, reason: str | None
    ) -> ProviderPaymentIntent: ...

    def list_sessions(self, created_gte: int) -> AsyncIterator[ProviderSession]:
        """Sessions created at or after ``created_gte`` (Unix seconds), newest first."""
        ...

    async def close(self) -> None: ...
