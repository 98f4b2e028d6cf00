"""Request and response bodies as msgspec Structs; their constraints are the API's limits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

# No control characters anywhere in free text: they break logs, CSV exports and labels.
_TEXT = r"^[^\x00-\x1f\x7f]*$"

Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=_TEXT)]
Line = Annotated[str, Meta(min_length=1, max_length=200, pattern=_TEXT)]
OptionalLine = Annotated[str, Meta(max_length=200, pattern=_TEXT)]
Email = Annotated[
    str,
    Meta(
        max_length=254,
        pattern=r"^\s*[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+\s*$",
        description="The customer's email; compared trimmed and lower-cased.",
    ),
]
Phone = Annotated[
    str, Meta(pattern=r"^\+?[0-9][0-9 ().-]{5,22}[0-9]$", description="E.164 or national digits")
]
PostalCode = Annotated[str, Meta(min_length=2, max_length=12, pattern=r"^[A-Za-z0-9 -]+$")]
Country = Annotated[str, Meta(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]
Region = Annotated[str, Meta(min_length=1, max_length=100, pattern=_TEXT)]
Sku = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]
Quantity = Annotated[int, Meta(ge=1, le=100)]


class Address(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    line1: Line
    city: Region
    state: Region
    postal_code: PostalCode
    country: Country
    line2: OptionalLine | None = None


class CustomerIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    name: Name
    address: Address
    phone: Phone | None = None


class CartItem(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sku: Sku
    quantity: Quantity


class CheckoutRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    customer: CustomerIn
    items: Annotated[list[CartItem], Meta(min_length=1, max_length=50)]


class Pay(msgspec.Struct):
    session_url: str | None
    session_id: str


class CheckoutResponse(msgspec.Struct):
    ok: bool
    checkout_trace_id: str
    order_id: str
    job_id: str
    pay: Pay


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    fields: list[dict[str, Any]] | None = None


class ErrorResponse(msgspec.Struct, omit_defaults=True):
    ok: bool
    error: ErrorDetail
    checkout_trace_id: str | None = None


class CatalogEntry(msgspec.Struct):
    sku: str
    name: str
    description: str
    unit_amount_cents: int
    currency: str
    max_quantity: int


class Catalog(msgspec.Struct):
    items: list[CatalogEntry]


class TimelineStep(msgspec.Struct):
    seq: int
    kind: str
    event: str
    from_state: str | None
    to_state: str | None
    at: str
    duration_ms: float | None
    since_previous_ms: float | None
    detail: dict[str, Any]
    # The OpenTelemetry trace of the request or pass that made the step (None: untraced),
    # and its page in a trace viewer when H2S_TRACE_URL_TEMPLATE is set.
    otel_trace_id: str | None = None
    trace_url: str | None = None


class EventAttempt(msgspec.Struct):
    attempt: int
    started_at: str
    duration_ms: float | None
    status_code: int | None
    error: str | None
    response_body: str | None = None


class TimelineDelivery(msgspec.Struct):
    delivery_id: str
    endpoint_id: str
    url: str
    status: str
    attempts: list[EventAttempt]


class TimelineEvent(msgspec.Struct):
    event_id: str
    type: str
    sequence: int
    created_at: str
    deliveries: list[TimelineDelivery]


class Timeline(msgspec.Struct):
    checkout_trace_id: str
    state: str
    order_id: str | None
    job_id: str | None
    session_id: str | None
    key_source: str
    created_at: str
    updated_at: str
    steps: list[TimelineStep]
    failures: list[dict[str, Any]]
    events: list[TimelineEvent] = msgspec.field(default_factory=list)


class CheckoutView(msgspec.Struct):
    checkout_trace_id: str
    state: str
    order: dict[str, Any] | None
    job: dict[str, Any] | None
    provider_session: dict[str, Any] | None
    # Every refund of the order (a cancellation's, a late payment's), oldest first.
    refunds: list[dict[str, Any]] = msgspec.field(default_factory=list)


class Health(msgspec.Struct):
    status: str
    checks: dict[str, Any] = msgspec.field(default_factory=dict)


# -- outbound events ----------------------------------------------------------------------


# The types an endpoint may ask for (domain/events.py SUBSCRIBABLE_TYPES), or * for all.
EventTypeName = Annotated[
    str,
    Meta(
        pattern=r"^(\*|order\.(created|paid|expired|cancelled|refund_pending|refunded|"
        r"refund_failed|authorized|captured|refunded_partially|authorization_expired)|"
        r"job\.completed|catalog\.item_(created|updated)|service_area\.updated)$"
    ),
]


class EventEndpointIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=2048,
            pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://",
            description="http(s) URL that receives events",
        ),
    ]
    event_types: (
        Annotated[
            list[EventTypeName],
            Meta(
                min_length=1,
                max_length=20,
                description="Event types to receive (order.created, order.paid, ...), or *",
            ),
        ]
        | None
    ) = None
    description: Annotated[str, Meta(max_length=500)] | None = None


class EventEndpoint(msgspec.Struct, omit_defaults=True, kw_only=True):
    id: str
    url: str
    description: str
    event_types: list[str]
    status: str
    status_reason: str | None
    source: str
    created_at: datetime
    previous_secret_expires_at: datetime | None
    secret: str | None = None  # only in the answers that create or rotate it


class EventEndpoints(msgspec.Struct):
    endpoints: list[EventEndpoint]


class EventDelivery(msgspec.Struct, kw_only=True):
    id: str
    event_id: str
    event_type: str
    order_id: str | None  # None for a catalog or service-area event
    sequence: int
    status: str
    attempts: list[EventAttempt]
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class EventDeliveries(msgspec.Struct):
    deliveries: list[EventDelivery]


class RetryAccepted(msgspec.Struct):
    ok: bool
    id: str
    status: str
