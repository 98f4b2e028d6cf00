"""POST /api/stripe/webhook: Stripe's signed events, public but verified."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency

from h2s_checkout.api.openapi import error_responses
from h2s_checkout.domain.access import WEBHOOK
from h2s_checkout.domain.errors import CheckoutError
from h2s_checkout.flows.webhooks import apply_event, verify
from h2s_checkout.logging import bind_actor
from h2s_checkout.metrics import WEBHOOK_EVENTS


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
        status_code=200,
        responses=error_responses(400, 503),
        # Event payloads carry the whole session; larger than a checkout request.
        request_max_body_size=1024 * 1024,
    )
    async def receive(
        self, request: Request[Any, Any, Any], db_pool: NamedDependency[asyncpg.Pool]
    ) -> WebhookAnswer:
        payload = await request.body()
        try:
            event = verify(
                payload,
                request.headers.get("stripe-signature"),
                request.app.state.settings.stripe_webhook_secret,
            )
        except CheckoutError as exc:
            WEBHOOK_EVENTS.labels("unverified", exc.code).inc()
            raise
        bind_actor(WEBHOOK)  # its log lines and the trace rows it writes say "webhook"
        result = await apply_event(db_pool, event)
        WEBHOOK_EVENTS.labels(result.type, result.result).inc()
        return WebhookAnswer(
            received=True,
            event_id=result.event_id,
            type=result.type,
            result=result.result,
            duplicate=result.duplicate,
        )
