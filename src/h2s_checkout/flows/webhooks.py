"""Stripe webhook events: verified with the SDK, each event id applied exactly once.

With tracing on an event's receipt is a span (``stripe.webhook <type>``) linked to the span
that created its session (the session's ``h2s_traceparent`` metadata), so the trace of a
payment leads back to the checkout's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import stripe

from h2s_checkout.domain.errors import CheckoutError
from h2s_checkout.flows import refunds
from h2s_checkout.flows.capture import apply_lapse, release_hold
from h2s_checkout.flows.settle import (
    AUTHORIZED,
    ENDED_UNKEPT,
    EXPIRED,
    PAID,
    PAYMENT_FAILED,
    is_hold,
    settle,
)
from h2s_checkout.observability import tracing
from h2s_checkout.observability.logging import get_logger
from h2s_checkout.payments.port import PaymentGateway, PaymentProviderFailure, ProviderPaymentIntent
from h2s_checkout.payments.stripe_gateway import (
    payment_intent_from_dict,
    refund_from_dict,
    session_from_dict,
)
from h2s_checkout.store import checkouts, payments
from h2s_checkout.store import refunds as refunds_store
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import Step, record_steps, utcnow

log = get_logger(__name__)

SIGNATURE_TOLERANCE_S = 300


class InvalidSignature(CheckoutError):
    code = "invalid_signature"
    status = 400


class WebhookNotConfigured(CheckoutError):
    code = "webhook_not_configured"
    status = 503


@dataclass(frozen=True, slots=True)
class EventResult:
    event_id: str
    type: str
    result: str
    duplicate: bool = False


def _outcome(event_type: str, session: dict[str, Any]) -> str | None:
    if event_type == "checkout.session.completed":
        # A delayed payment method completes the session unpaid; its money comes later
        # as async_payment_succeeded (or never, as async_payment_failed).
        return PAID if session.get("payment_status") in ("paid", "no_payment_required") else None
    if event_type == "checkout.session.async_payment_succeeded":
        return PAID
    if event_type == "checkout.session.expired":
        return EXPIRED
    if event_type == "checkout.session.async_payment_failed":
        return PAYMENT_FAILED
    return None


# Events about a refund: the refund itself, or the charge it was made on (its list of
# refunds). A refund the service did not make (Stripe's dashboard) is not found and ignored.
_REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed"})


def _uuid_or_none(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _signed_at(signature: str) -> int | None:
    """The t= of a Stripe-Signature header; None if it has none (the SDK refuses it)."""
    for item in signature.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            return int(value)
    return None


def verify(payload: bytes, signature: str | None, secret: str | None) -> dict[str, Any]:
    """The event, if the signature is Stripe's and fresh; else InvalidSignature (400)."""
    if not secret:
        raise WebhookNotConfigured("STRIPE_WEBHOOK_SECRET is not set; the event was not read")
    if not signature:
        raise InvalidSignature("missing Stripe-Signature header")
    # The SDK refuses a timestamp older than the tolerance but not one ahead of it: an
    # event signed for next year would be accepted, and its replays with it, until then.
    signed_at = _signed_at(signature)
    if signed_at is not None and signed_at > time.time() + SIGNATURE_TOLERANCE_S:
        raise InvalidSignature(
            f"signature rejected: its timestamp is more than {SIGNATURE_TOLERANCE_S} s ahead"
        )
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, secret, tolerance=SIGNATURE_TOLERANCE_S
        )
    except stripe.SignatureVerificationError as exc:
        raise InvalidSignature(f"signature rejected: {exc.user_message or 'invalid'}") from exc
    except (ValueError, RecursionError) as exc:
        # RecursionError: nested past what the decoder can take, in a body larger than the
        # request screen counts depth in (api/request_screen.py); signed, so Stripe's.
        raise InvalidSignature("the payload is not a Stripe event") from exc
    data: dict[str, Any] = event.to_dict()
    if not data.get("id") or not data.get("type"):
        raise InvalidSignature("the payload is not a Stripe event")
    return data


async def _held_intent(
    gateway: PaymentGateway | None, event_type: str, obj: dict[str, Any]
) -> ProviderPaymentIntent | None:
    """A completed session left unpaid is a bank debit on its way or a card held for
    capture; only its PaymentIntent tells which (asked before any transaction opens)."""
    if (
        gateway is None
        or event_type != "checkout.session.completed"
        or obj.get("payment_status") != "unpaid"
        or not obj.get("payment_intent")
    ):
        return None
    try:
        return await gateway.retrieve_payment_intent(str(obj["payment_intent"]))
    except PaymentProviderFailure as failure:
        # Not applied as a hold now: the event is answered as pending, and the reconciler
        # asks again about the session.
        log.warning("webhook.intent_unknown", provider_code=failure.provider_code)
        return None


async def apply_event(
    pool: asyncpg.Pool,
    event: dict[str, Any],
    clock: Callable[[], datetime] = utcnow,
    gateway: PaymentGateway | None = None,
) -> EventResult:
    """Record the event id and apply it, in one transaction; a redelivery changes nothing."""
    obj = (event.get("data") or {}).get("object") or {}
    metadata = obj.get("metadata") or {}
    origin = metadata.get("h2s_traceparent")
    with tracing.span(
        f"stripe.webhook {event['type']}",
        kind="consumer",
        attributes={
            "h2s.stripe.event_id": event["id"],
            "h2s.stripe.event_type": event["type"],
            "h2s.checkout_trace_id": metadata.get("checkout_trace_id"),
            "h2s.order_id": obj.get("client_reference_id") or metadata.get("order_id"),
        },
        links=[origin] if isinstance(origin, str) else (),
    ) as span:
        result = await _apply_event(pool, event, clock, gateway)
        span.set({"h2s.webhook.result": result.result})
        return result


async def _apply_event(
    pool: asyncpg.Pool,
    event: dict[str, Any],
    clock: Callable[[], datetime],
    gateway: PaymentGateway | None,
) -> EventResult:
    event_id, event_type = event["id"], event["type"]
    obj = (event.get("data") or {}).get("object") or {}
    is_session = obj.get("object") == "checkout.session"
    held = await _held_intent(gateway, event_type, obj) if is_session else None
    async with connection(pool) as conn, conn.transaction():
        fresh = await payments.record_event(
            conn, event_id, event_type, obj.get("id") if is_session else None, event
        )
        if not fresh:
            return EventResult(event_id, event_type, "duplicate", duplicate=True)
        if event_type in _REFUND_EVENTS or event_type == "charge.refunded":
            result, checkout_id = await _apply_refund_event(conn, event_type, obj, event_id)
            await payments.set_event_result(conn, event_id, result, checkout_id)
            log.info("webhook.applied", event_type=event_type, event_id=event_id, result=result)
            return EventResult(event_id, event_type, result)
        if event_type == "payment_intent.canceled" and obj.get("object") == "payment_intent":
            result, checkout_id = await _apply_intent_canceled(conn, obj, event_id)
            await payments.set_event_result(conn, event_id, result, checkout_id)
            log.info("webhook.applied", event_type=event_type, event_id=event_id, result=result)
            return EventResult(event_id, event_type, result)
        outcome = _outcome(event_type, obj) if is_session else None
        if outcome is None and is_hold(held):
            outcome = AUTHORIZED
        pending = is_session and event_type == "checkout.session.completed" and outcome is None
        if outcome is None and not pending:
            await payments.set_event_result(conn, event_id, "ignored", None)
            log.info("webhook.ignored", event_type=event_type, event_id=event_id)
            return EventResult(event_id, event_type, "ignored")
        metadata = obj.get("metadata") or {}
        checkout = await payments.find_checkout_for_update(
            conn,
            checkout_id=_uuid_or_none(metadata.get("checkout_trace_id")),
            order_id=obj.get("client_reference_id") or metadata.get("order_id"),
            session_id=obj.get("id"),
        )
        if checkout is None:
            await payments.set_event_result(conn, event_id, "unknown_checkout", None)
            log.warning("webhook.unknown_checkout", event_id=event_id, session_id=obj.get("id"))
            return EventResult(event_id, event_type, "unknown_checkout")
        if outcome is None:
            # A delayed method (a bank debit) completed the session unpaid: its money comes
            # later as async_payment_succeeded, or never, as async_payment_failed.
            result = "awaiting_async_payment"
            await record_steps(
                conn,
                checkout["checkout_id"],
                [
                    Step.now(
                        "payment.pending",
                        source=f"webhook:{event_id}",
                        session_id=obj.get("id"),
                        payment_status=obj.get("payment_status"),
                    )
                ],
            )
        else:
            result = await settle(
                conn,
                checkout,
                session_from_dict(obj),
                outcome,
                source=f"webhook:{event_id}",
                at=clock(),
                event_type=event_type,
                intent=held,
            )
        await payments.set_event_result(conn, event_id, result, checkout["checkout_id"])
    log.info(
        "webhook.applied",
        event_type=event_type,
        event_id=event_id,
        result=result,
        checkout_trace_id=str(checkout["checkout_id"]),
    )
    # A card held for an order that had already ended: nothing is owed, so the hold goes
    # back to the card now rather than when it lapses.
    if (
        outcome == AUTHORIZED
        and held is not None
        and gateway is not None
        and result.removeprefix("already_") in ENDED_UNKEPT
    ):
        await release_hold(
            pool,
            gateway,
            checkout["checkout_id"],
            held.id,
            order_id=checkout["order_id"],
            reason="abandoned",
        )
    return EventResult(event_id, event_type, result)


async def _apply_intent_canceled(
    conn: asyncpg.Connection, obj: dict[str, Any], event_id: str
) -> tuple[str, uuid.UUID | None]:
    """A PaymentIntent cancelled: by Stripe when a hold lapsed (reason automatic), or by
    our own release of a cancelled order's hold, which finds the order cancelled."""
    intent = payment_intent_from_dict(obj)
    checkout = await payments.find_checkout_by_intent_for_update(
        conn,
        checkout_id=_uuid_or_none(intent.metadata.get("checkout_trace_id")),
        payment_intent=intent.id,
    )
    if checkout is None:
        return "unknown_checkout", None
    result = await apply_lapse(conn, checkout, intent, source=f"webhook:{event_id}")
    return result, checkout["checkout_id"]


async def _apply_refund_event(
    conn: asyncpg.Connection, event_type: str, obj: dict[str, Any], event_id: str
) -> tuple[str, uuid.UUID | None]:
    """Apply each refund the event carries; the result and the checkout it concerned."""
    if event_type == "charge.refunded":
        found = ((obj.get("refunds") or {}).get("data")) or []
    else:
        found = [obj]
    results: list[str] = []
    checkout_id: uuid.UUID | None = None
    for item in found:
        if item.get("object") != "refund" or not item.get("id"):
            continue
        answer = refund_from_dict(item)
        found = await refunds_store.find_refund(
            conn,
            stripe_refund_id=answer.id,
            refund_id=_uuid_or_none(answer.metadata.get("refund_id")),
        )
        if found is None:
            results.append("unknown_refund")
            continue
        # Checkout first, then the refund: the one order every path locks them in.
        await checkouts.get_checkout(conn, found["checkout_id"], for_update=True)
        row = await refunds_store.get_refund_for_update(conn, found["refund_id"])
        assert row is not None
        checkout_id = row["checkout_id"]
        results.append(
            await refunds.apply_answer(conn, row, answer, source=f"webhook:{event_id}", at=utcnow())
        )
    return (",".join(sorted(set(results))) or "ignored"), checkout_id
