"""Begin a checkout: claim its key, order and job (phase 1), session (2), link (3)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from h2s_checkout.domain import keys, return_urls
from h2s_checkout.domain.cart import PricedCart, cart_fingerprint, normalize_email, price_cart
from h2s_checkout.domain.errors import (
    CheckoutError,
    CheckoutInProgress,
    DatabaseUnavailable,
    IdempotencyKeyReused,
    IllegalTransition,
    PaymentProviderError,
)
from h2s_checkout.flows.catalog_cache import CatalogCache
from h2s_checkout.flows.cleanup import fail_and_clean
from h2s_checkout.flows.machine_io import BoundMachine, bound_machine_at, machine_at
from h2s_checkout.logging import get_logger
from h2s_checkout.metrics import PHASE_SECONDS
from h2s_checkout.payments.port import (
    PaymentGateway,
    PaymentProviderFailure,
    ProviderSession,
    SessionLine,
    SessionRequest,
)
from h2s_checkout.store import checkouts
from h2s_checkout.store.pool import UNAVAILABLE_ERRORS, UNAVAILABLE_OR_DOWN, connection
from h2s_checkout.store.traces import Step, record_steps, utcnow

log = get_logger(__name__)

DERIVED_KEY_WINDOW = timedelta(minutes=5)
# States whose checkout has its final 201 answer stored: a retry replays it.
ANSWERED_STATES = frozenset({"session_created", "paid", "expired"})


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
    lease: timedelta = timedelta(seconds=90)
    clock: Callable[[], datetime] = field(default=utcnow)
    success_url: str | None = None  # H2S_SUCCESS_URL template; None: our own page
    cancel_url: str | None = None  # H2S_CANCEL_URL template; None: our own page


@dataclass(frozen=True, slots=True)
class Claim:
    """Which earlier checkout a request is a retry of, if any."""

    key_source: str  # "client" (Idempotency-Key header) or "derived" (email + cart)
    idempotency_key: str | None
    derived_key: str
    request_digest: str
    cart_fingerprint: str

    @property
    def lock_key(self) -> str:
        key = self.idempotency_key if self.key_source == "client" else self.derived_key
        return keys.claim_lock_key(self.key_source, key or "")


@dataclass(frozen=True, slots=True)
class Plan:
    """What phases 2 and 3 need. The Stripe request is stored in phase 1 and read back on
    resume, so every attempt sends the same parameters under the same idempotency key."""

    checkout_id: uuid.UUID
    order_id: str
    job_id: uuid.UUID
    session_request: SessionRequest
    # Phase 1's machine, at job_queued, when the same request goes on to phase 3.
    machine: BoundMachine | None = None


@dataclass(frozen=True, slots=True)
class _Replay:
    row: asyncpg.Record


@dataclass(frozen=True, slots=True)
class _Conflict:
    checkout_id: uuid.UUID


def success_body(
    checkout_id: uuid.UUID, order_id: str, job_id: uuid.UUID, session: ProviderSession
) -> dict[str, Any]:
    """The 201 answer a checkout stores and every retry replays (the seed's shape)."""
    return {
        "ok": True,
        "checkout_trace_id": str(checkout_id),
        "order_id": order_id,
        "job_id": str(job_id),
        "pay": {"session_url": session.url, "session_id": session.id},
    }


def _claim_for(command: CheckoutCommand) -> Claim:
    fingerprint = cart_fingerprint(command.items)
    return Claim(
        key_source="client" if command.idempotency_key else "derived",
        idempotency_key=command.idempotency_key,
        derived_key=keys.derived_key(normalize_email(command.customer.email), fingerprint),
        request_digest=keys.request_digest(command.request_body),
        cart_fingerprint=fingerprint,
    )


def _plan_from_row(checkout: asyncpg.Record) -> Plan:
    return Plan(
        checkout_id=checkout["checkout_id"],
        order_id=checkout["order_id"],
        job_id=checkout["job_id"],
        session_request=SessionRequest.from_dict(checkout["session_request"]),
    )


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
        # Pricing comes first: a bad cart is refused before anything is read or written.
        cart = price_cart(command.items, await self._catalog.items())
        claim = _claim_for(command)
        now = self._settings.clock()
        try:
            # One pooled connection for the lookup and phase 1: a replay or a new checkout
            # costs one acquire and no extra round trip.
            async with connection(self._pool) as conn:
                finished = await self._find(conn, claim, now)
                if finished is not None and finished["state"] in ANSWERED_STATES:
                    # The fast path: a finished checkout is replayed without any lock.
                    await self._record_replay(conn, finished, claim)
                    return self._stored_answer(finished)
                with PHASE_SECONDS.labels("claim_and_queue").time():
                    outcome = await self._claim_and_queue(conn, claim, cart, command, now)
        except UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable("the database is unavailable; nothing was written") from exc
        if isinstance(outcome, _Replay):
            return self._stored_answer(outcome.row)
        if isinstance(outcome, _Conflict):
            raise CheckoutInProgress(
                "a checkout with this key is in progress; retry shortly",
                checkout_id=str(outcome.checkout_id),
                retry_after_s=1,
            )
        with PHASE_SECONDS.labels("create_session").time():
            session, session_ms = await self._create_session(outcome)
        with PHASE_SECONDS.labels("link_session").time():
            return await self._link_session(outcome, session, session_ms)

    # -- claims ---------------------------------------------------------------------------

    async def _find(
        self, conn: asyncpg.Connection, claim: Claim, now: datetime
    ) -> asyncpg.Record | None:
        if claim.key_source == "client":
            row = await checkouts.find_by_client_key(conn, claim.idempotency_key or "")
            if row is not None and row["request_fingerprint"] != claim.request_digest:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with a different request body"
                )
            return row
        return await checkouts.find_by_derived_key(
            conn, claim.derived_key, now - DERIVED_KEY_WINDOW
        )

    @staticmethod
    async def _record_replay(conn: asyncpg.Connection, row: asyncpg.Record, claim: Claim) -> None:
        structlog.contextvars.bind_contextvars(checkout_trace_id=str(row["checkout_id"]))
        await record_steps(
            conn, row["checkout_id"], [Step.now("checkout.replayed", key_source=claim.key_source)]
        )

    @staticmethod
    def _stored_answer(row: asyncpg.Record, *, replayed: bool = True) -> CheckoutResult:
        return CheckoutResult(
            status=row["response_status"],
            body=row["response_body"],
            checkout_id=row["checkout_id"],
            replayed=replayed,
        )

    async def _claim_and_queue(
        self,
        conn: asyncpg.Connection,
        claim: Claim,
        cart: PricedCart,
        command: CheckoutCommand,
        now: datetime,
    ) -> Plan | _Replay | _Conflict:
        """Phase 1, one transaction: claim the key, then replay, resume, refuse or create."""
        async with conn.transaction():
            await checkouts.lock_claim(conn, claim.lock_key)
            row = await self._find(conn, claim, now)
            if row is None:
                return await self._queue_order_and_job(conn, claim, cart, command, now)
            checkout_id = row["checkout_id"]
            structlog.contextvars.bind_contextvars(checkout_trace_id=str(checkout_id))
            if row["state"] == "job_queued":
                attempt = await checkouts.take_over(
                    conn, checkout_id, until=now + self._settings.lease, now=now
                )
                if attempt is not None:
                    # The attempt that held this checkout died mid-way: carry on from the
                    # recovery point with the same order, job and Stripe idempotency key.
                    await record_steps(
                        conn,
                        checkout_id,
                        [Step.now("checkout.resumed", attempt=attempt, from_state="job_queued")],
                    )
                    return _plan_from_row(row)
                # Not taken over: still held, or finished since it was read.
                row = await checkouts.get_checkout(conn, checkout_id) or row
            if row["state"] in ANSWERED_STATES:
                await self._record_replay(conn, row, claim)
                return _Replay(row)
            await record_steps(
                conn,
                checkout_id,
                [Step.now("checkout.conflict", state=row["state"], key_source=claim.key_source)],
            )
            return _Conflict(checkout_id)

    async def _queue_order_and_job(
        self,
        conn: asyncpg.Connection,
        claim: Claim,
        cart: PricedCart,
        command: CheckoutCommand,
        now: datetime,
    ) -> Plan:
        """The new-checkout half of phase 1: nothing is written unless all of it is."""
        checkout_id = uuid.uuid4()
        structlog.contextvars.bind_contextvars(checkout_trace_id=str(checkout_id))
        order_id = keys.order_id_for(checkout_id)
        job_id = keys.job_id_for(checkout_id)
        plan = Plan(
            checkout_id=checkout_id,
            order_id=order_id,
            job_id=job_id,
            session_request=self._session_request(
                checkout_id,
                order_id,
                job_id,
                command.customer.email.strip(),
                tuple(
                    SessionLine(line.name, line.unit_amount_cents, line.quantity, line.currency)
                    for line in cart.lines
                ),
                now + self._settings.session_ttl,
            ),
        )
        email = command.customer.email.strip()
        try:
            writer = checkouts.CheckoutCreationWriter(
                conn,
                checkout_id,
                new=checkouts.NewCheckout(
                    idempotency_key=claim.idempotency_key,
                    key_source=claim.key_source,
                    derived_key=claim.derived_key,
                    request_fingerprint=claim.request_digest,
                    request_body=command.request_body,
                    stripe_idempotency_key=keys.stripe_idempotency_key(checkout_id),
                    created_at=now,
                    locked_until=now + self._settings.lease,
                    session_request=plan.session_request.to_dict(),
                    order_id=order_id,
                    job_id=job_id,
                    email_normalized=normalize_email(email),
                    email=email,
                    name=command.customer.name,
                    phone=command.customer.phone,
                    customer={
                        "email": email,
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
                        for line in cart.lines
                    ],
                    subtotal_cents=cart.subtotal_cents,
                    total_cents=cart.total_cents,
                    currency=cart.currency,
                ),
            )
            writer.step(
                "checkout.received",
                key_source=claim.key_source,
                lines=len(cart.lines),
                total_cents=cart.total_cents,
                cart_fingerprint=claim.cart_fingerprint[:16],
            )
            # The machine's first transition writes the checkout, its recipient, order and
            # job, and the trace rows, in one statement of this transaction.
            bound = await bound_machine_at("pending_payment", writer)
            await bound.machine.send(
                "queue_job", detail={"order_id": order_id, "job_id": str(job_id)}
            )
        except CheckoutError as exc:
            exc.checkout_id = exc.checkout_id or str(checkout_id)
            raise
        return dataclasses.replace(plan, machine=bound)

    async def resume(self, checkout: asyncpg.Record, *, source: str) -> CheckoutResult:
        """Finish a checkout leased in ``job_queued`` (by the reconciler): phases 2 and 3
        with the stored Stripe request, so Stripe returns the session it may already have."""
        structlog.contextvars.bind_contextvars(checkout_trace_id=str(checkout["checkout_id"]))
        async with connection(self._pool) as conn:
            await record_steps(
                conn,
                checkout["checkout_id"],
                [Step.now("checkout.resumed", source=source, attempt=checkout["attempts"])],
            )
        plan = _plan_from_row(checkout)
        session, session_ms = await self._create_session(plan)
        return await self._link_session(plan, session, session_ms)

    # -- phases 2 and 3 -------------------------------------------------------------------

    def _session_request(
        self,
        checkout_id: uuid.UUID,
        order_id: str,
        job_id: uuid.UUID,
        customer_email: str,
        lines: tuple[SessionLine, ...],
        expires_at: datetime,
    ) -> SessionRequest:
        base = self._settings.public_base_url
        return SessionRequest(
            idempotency_key=keys.stripe_idempotency_key(checkout_id),
            client_reference_id=order_id,
            customer_email=customer_email,
            lines=lines,
            success_url=return_urls.success_url(order_id, base, self._settings.success_url),
            cancel_url=return_urls.cancel_url(order_id, base, self._settings.cancel_url),
            expires_at=expires_at,
            metadata={
                "order_id": order_id,
                "job_id": str(job_id),
                "checkout_trace_id": str(checkout_id),
            },
        )

    async def _create_session(self, plan: Plan) -> tuple[ProviderSession, float]:
        """Phase 2: the one foreign call, keyed by the checkout's own id."""
        request = plan.session_request
        started = time.perf_counter()
        try:
            session = await self._gateway.create_session(request)
        except Exception as exc:
            await fail_and_clean(
                self._pool,
                self._gateway,
                plan.checkout_id,
                phase="create_session",
                error=exc,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                replay=request,
            )
            if isinstance(exc, PaymentProviderFailure):
                raise PaymentProviderError(
                    "the payment provider failed; the order and the job were cancelled",
                    checkout_id=str(plan.checkout_id),
                    provider_code=exc.provider_code,
                ) from exc
            raise
        return session, round((time.perf_counter() - started) * 1000, 3)

    async def _link_session(
        self, plan: Plan, session: ProviderSession, session_ms: float
    ) -> CheckoutResult:
        """Phase 3, one statement: the session onto the order, the answer stored."""
        body = success_body(plan.checkout_id, plan.order_id, plan.job_id, session)
        try:
            async with connection(self._pool) as conn:
                writer = checkouts.SessionLinkWriter(
                    conn,
                    plan.checkout_id,
                    session_id=session.id,
                    job_id=plan.job_id,
                    response_body=body,
                )
                writer.step(
                    "stripe.session_created",
                    session_ms,
                    session_id=session.id,
                    provider_request_id=session.request_id,
                    expires_at=session.expires_at,
                )
                machine = (
                    plan.machine.write_with(writer)
                    if plan.machine is not None
                    else await machine_at("job_queued", writer)
                )
                try:
                    await machine.send("create_session", detail={"session_id": session.id})
                except IllegalTransition:
                    current = await checkouts.get_checkout(conn, plan.checkout_id)
                    if current is not None and current["response_status"] is not None:
                        # A webhook for this session linked it first (the storefront and
                        # the event raced); its stored answer is this request's answer.
                        return self._stored_answer(current, replayed=False)
                    raise
        except UNAVAILABLE_OR_DOWN as exc:
            # The session exists and the checkout is resumable from job_queued: a retry
            # after the lease, or the reconciler, finishes it with the same Stripe key.
            log.error("checkout.link_failed", error=type(exc).__name__, session_id=session.id)
            raise DatabaseUnavailable(
                "the database became unavailable; retry to complete the checkout",
                checkout_id=str(plan.checkout_id),
            ) from exc
        except Exception as exc:
            await fail_and_clean(
                self._pool,
                self._gateway,
                plan.checkout_id,
                phase="link_session",
                error=exc,
                session_id=session.id,
            )
            raise
        return CheckoutResult(status=201, body=body, checkout_id=plan.checkout_id)
