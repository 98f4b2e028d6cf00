"""Begin a checkout: order and job (phase 1), Stripe session (phase 2), link (phase 3)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from h2s_checkout.domain import keys
from h2s_checkout.domain.cart import PricedCart, cart_fingerprint, normalize_email, price_cart
from h2s_checkout.domain.errors import CheckoutError, DatabaseUnavailable, PaymentProviderError
from h2s_checkout.flows.catalog_cache import CatalogCache
from h2s_checkout.flows.cleanup import fail_and_clean
from h2s_checkout.flows.machine_io import machine_at
from h2s_checkout.logging import get_logger
from h2s_checkout.payments.port import (
    PaymentGateway,
    PaymentProviderFailure,
    ProviderSession,
    SessionLine,
    SessionRequest,
)
from h2s_checkout.store import checkouts
from h2s_checkout.store.pool import UNAVAILABLE_ERRORS, connection
from h2s_checkout.store.traces import TraceWriter, utcnow

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Customer:
    email: str
    name: str
    phone: str | None
    address: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CheckoutCommand:
    customer: Customer
    items: tuple[tuple[str, int], ...]
    request_body: dict[str, Any]
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    status: int
    body: dict[str, Any]
    checkout_id: uuid.UUID
    replayed: bool = False


@dataclass
class CheckoutSettings:
    public_base_url: str
    session_ttl: timedelta = timedelta(minutes=60)
    clock: Callable[[], datetime] = field(default=utcnow)


@dataclass(frozen=True, slots=True)
class _Prepared:
    checkout_id: uuid.UUID
    order_id: str
    job_id: uuid.UUID
    cart: PricedCart
    email_normalized: str
    fingerprint: str


class CheckoutFlow:
    """The three atomic phases; the Stripe call is never inside a database transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: PaymentGateway,
        catalog: CatalogCache,
        settings: CheckoutSettings,
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._catalog = catalog
        self._settings = settings

    async def begin(self, command: CheckoutCommand) -> CheckoutResult:
        # Pricing comes first: a bad cart is refused before anything is written.
        cart = price_cart(command.items, await self._catalog.items())
        checkout_id = uuid.uuid4()
        structlog.contextvars.bind_contextvars(checkout_trace_id=str(checkout_id))
        prepared = _Prepared(
            checkout_id=checkout_id,
            order_id=keys.order_id_for(checkout_id),
            job_id=keys.job_id_for(checkout_id),
            cart=cart,
            email_normalized=normalize_email(command.customer.email),
            fingerprint=cart_fingerprint(command.items),
        )
        await self._queue_order_and_job(prepared, command)
        session, session_ms = await self._create_session(prepared, command)
        return await self._link_session(prepared, session, session_ms)

    async def _queue_order_and_job(self, p: _Prepared, command: CheckoutCommand) -> None:
        """Phase 1, one transaction: nothing is written unless all of it is."""
        try:
            async with connection(self._pool) as conn, conn.transaction():
                writer = TraceWriter(conn, p.checkout_id)
                await checkouts.insert_checkout(
                    conn,
                    checkout_id=p.checkout_id,
                    idempotency_key=command.idempotency_key,
                    key_source="client" if command.idempotency_key else "derived",
                    derived_key=keys.derived_key(p.email_normalized, p.fingerprint),
                    request_fingerprint=p.fingerprint,
                    request_body=command.request_body,
                    stripe_idempotency_key=keys.stripe_idempotency_key(p.checkout_id),
                )
                writer.step(
                    "checkout.received",
                    key_source="client" if command.idempotency_key else "derived",
                    lines=len(p.cart.lines),
                    total_cents=p.cart.total_cents,
                )
                with writer.timed("recipient.upserted") as detail:
                    recipient_id = await checkouts.upsert_recipient(
                        conn,
                        email_normalized=p.email_normalized,
                        email=command.customer.email.strip(),
                        name=command.customer.name,
                        phone=command.customer.phone,
                    )
                    detail["recipient_id"] = str(recipient_id)
                with writer.timed("order.created") as detail:
                    await checkouts.insert_order(
                        conn,
                        order_id=p.order_id,
                        checkout_id=p.checkout_id,
                        recipient_id=recipient_id,
                        customer={
                            "email": command.customer.email.strip(),
                            "name": command.customer.name,
                            "phone": command.customer.phone,
                            "address": command.customer.address,
                        },
                        items=[
                            {
                                "sku": line.sku,
                                "name": line.name,
                                "quantity": line.quantity,
                                "unit_amount_cents": line.unit_amount_cents,
                                "amount_cents": line.amount_cents,
                            }
                            for line in p.cart.lines
                        ],
                        subtotal_cents=p.cart.subtotal_cents,
                        total_cents=p.cart.total_cents,
                        currency=p.cart.currency,
                    )
                    detail["order_id"] = p.order_id
                with writer.timed("job.queued") as detail:
                    job = await checkouts.insert_job(
                        conn,
                        job_id=p.job_id,
                        order_id=p.order_id,
                        recipient_id=recipient_id,
                        checkout_id=p.checkout_id,
                    )
                    detail.update(
                        job_id=str(p.job_id),
                        sequence_id=job["sequence_id"],
                        step_id=job["step_id"],
                        due_at=job["due_at"].isoformat(),
                    )
                machine = await machine_at("pending_payment", writer)
                await machine.send(
                    "queue_job", detail={"order_id": p.order_id, "job_id": str(p.job_id)}
                )
        except CheckoutError as exc:
            exc.checkout_id = exc.checkout_id or str(p.checkout_id)
            raise
        except UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable(
                "the database is unavailable; nothing was written",
                checkout_id=str(p.checkout_id),
            ) from exc

    def _session_request(self, p: _Prepared, command: CheckoutCommand) -> SessionRequest:
        base = self._settings.public_base_url
        return SessionRequest(
            idempotency_key=keys.stripe_idempotency_key(p.checkout_id),
            client_reference_id=p.order_id,
            customer_email=command.customer.email.strip(),
            lines=tuple(
                SessionLine(line.name, line.unit_amount_cents, line.quantity, line.currency)
                for line in p.cart.lines
            ),
            success_url=f"{base}/checkout/success?order_id={p.order_id}",
            cancel_url=f"{base}/checkout/cancel?order_id={p.order_id}",
            expires_at=self._settings.clock() + self._settings.session_ttl,
            metadata={
                "order_id": p.order_id,
                "job_id": str(p.job_id),
                "checkout_trace_id": str(p.checkout_id),
            },
        )

    async def _create_session(
        self, p: _Prepared, command: CheckoutCommand
    ) -> tuple[ProviderSession, float]:
        """Phase 2: the one foreign call, keyed by the checkout's own id."""
        request = self._session_request(p, command)
        started = time.perf_counter()
        try:
            session = await self._gateway.create_session(request)
        except Exception as exc:
            elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
            await fail_and_clean(
                self._pool,
                self._gateway,
                p.checkout_id,
                phase="create_session",
                error=exc,
                duration_ms=elapsed_ms,
                replay=request,
            )
            if isinstance(exc, PaymentProviderFailure):
                raise PaymentProviderError(
                    "the payment provider failed; the order and the job were cancelled",
                    checkout_id=str(p.checkout_id),
                    provider_code=exc.provider_code,
                ) from exc
            raise
        return session, round((time.perf_counter() - started) * 1000, 3)

    async def _link_session(
        self, p: _Prepared, session: ProviderSession, session_ms: float
    ) -> CheckoutResult:
        """Phase 3, one transaction: the session onto the order, the answer stored."""
        body = {
            "ok": True,
            "checkout_trace_id": str(p.checkout_id),
            "order_id": p.order_id,
            "job_id": str(p.job_id),
            "pay": {"session_url": session.url, "session_id": session.id},
        }
        try:
            async with connection(self._pool) as conn, conn.transaction():
                writer = TraceWriter(conn, p.checkout_id)
                writer.step(
                    "stripe.session_created",
                    session_ms,
                    session_id=session.id,
                    provider_request_id=session.request_id,
                    expires_at=session.expires_at,
                )
                await checkouts.link_session(
                    conn,
                    checkout_id=p.checkout_id,
                    order_id=p.order_id,
                    job_id=p.job_id,
                    session_id=session.id,
                    response_status=201,
                    response_body=body,
                )
                machine = await machine_at("job_queued", writer)
                await machine.send("create_session", detail={"session_id": session.id})
        except (DatabaseUnavailable, *UNAVAILABLE_ERRORS) as exc:
            # The session exists and the checkout is resumable from job_queued; with the
            # database gone there is nothing safe to write, so the reconciler finishes it.
            log.error("checkout.link_failed", error=type(exc).__name__, session_id=session.id)
            raise DatabaseUnavailable(
                "the database became unavailable; the checkout will be completed or cleaned up",
                checkout_id=str(p.checkout_id),
            ) from exc
        except Exception as exc:
            await fail_and_clean(
                self._pool,
                self._gateway,
                p.checkout_id,
                phase="link_session",
                error=exc,
                session_id=session.id,
            )
            raise
        return CheckoutResult(status=201, body=body, checkout_id=p.checkout_id)
