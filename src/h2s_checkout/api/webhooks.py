"""POST /api/stripe/webhook: Stripe's signed events, public but verified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import Dependency, HeaderParameter

from h2s_checkout.api.openapi import error_responses
from h2s_checkout.domain.access import WEBHOOK
from h2s_checkout.domain.errors import CheckoutError
from h2s_checkout.flows.webhooks import apply_event, verify
from h2s_checkout.observability.logging import bind_actor
from h2s_checkout.observability.metrics import WEBHOOK_EVENTS
from h2s_checkout.payments.port import PaymentGateway

# What Stripe sends: "t=<unix time>,v1=<HMAC-SHA256 hex>[,v0=...]". Any other value can
# never verify, so the pattern says no more than the signature check does.
SIGNATURE_PATTERN = r"^t=[0-9]+(,v[0-9]+=[0-9a-f]+)+$"
# Event payloads carry the whole session; larger than a checkout request.
WEBHOOK_MAX_BODY_BYTES = 1024 * 1024

StripeSignature = Annotated[
    str | None,
    HeaderParameter(
        name="Stripe-Signature",
        # Required in the schema; a missing one reaches verify(), which answers the
        # webhook's own 400 invalid_signature rather than a generic invalid_request.
        required=True,
        description="Stripe's signature of the raw body: t=<unix time>,v1=<HMAC-SHA256 hex>",
        schema_extra={"one_of": None, "type": OpenAPIType.STRING, "pattern": SIGNATURE_PATTERN},
    ),
]


@dataclass
class StripeEventOperation(Operation):
    """Shows the body the handler reads raw: the signature covers its exact bytes, so it is
    not parsed before it is verified."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="A Stripe event; only checkout.session events change anything",
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["id", "type", "data"],
                        properties={
                            "id": Schema(type=OpenAPIType.STRING, description="evt_..."),
                            "type": Schema(type=OpenAPIType.STRING),
                            "data": Schema(
                                type=OpenAPIType.OBJECT,
                                required=["object"],
                                properties={"object": Schema(type=OpenAPIType.OBJECT)},
                            ),
                        },
                    )
                )
            },
        )


class WebhookAnswer(msgspec.Struct):
    received: bool
    event_id: str
    type: str
    result: str
    duplicate: bool


class StripeWebhookController(Controller):
    path = "/api/stripe"
    tags = ["webhooks"]

    @post(
        "/webhook",
        summary="Stripe events (signature checked with STRIPE_WEBHOOK_SECRET, 300 s tolerance)",
        description=(
            "Only Stripe can sign an event: a well-formed event with any other signature is "
            "a 400 invalid_signature. 503 while STRIPE_WEBHOOK_SECRET is not set."
        ),
        status_code=200,
        responses=error_responses(400, 503),
        operation_class=StripeEventOperation,
        request_max_body_size=WEBHOOK_MAX_BODY_BYTES,
    )
    async def receive(
        self,
        request: Request[Any, Any, Any],
        db_pool: NamedDependency[asyncpg.Pool],
        payment_gateway: Annotated[PaymentGateway, Dependency(skip_validation=True)],
        stripe_signature: StripeSignature = None,
    ) -> WebhookAnswer:
        payload = await request.body()
        try:
            event = verify(
                payload, stripe_signature, request.app.state.settings.stripe_webhook_secret
            )
        except CheckoutError as exc:
            WEBHOOK_EVENTS.labels("unverified", exc.code).inc()
            raise
        bind_actor(WEBHOOK)  # its log lines and the trace rows it writes say "webhook"
        result = await apply_event(db_pool, event, gateway=payment_gateway)
        WEBHOOK_EVENTS.labels(result.type, result.result).inc()
        return WebhookAnswer(
            received=True,
            event_id=result.event_id,
            type=result.type,
            result=result.result,
            duplicate=result.duplicate,
        )
