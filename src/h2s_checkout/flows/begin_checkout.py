"""Begin a checkout: claim its key, order and job (phase 1), session (2), link (3).

Phase 1 is one call of ``h2s_begin_checkout`` and phase 3 one of ``h2s_link_session``
(store/checkouts.py): a new checkout costs two round trips, a replay one. With tracing on
each phase is a span (``checkout claim_and_queue``, ``checkout create_session``,
``checkout link_session``) with the checkout's trace id, order id and resulting state.

The cart is priced, and its service address checked, against this worker's cached
catalog and service area (flows/catalog_cache.py), with no round trip; phase 1 checks the
versions they were read at in the statement that writes the order, so the price charged
is the one current when phase 1 commits. A stale copy costs one reload and one more
pricing, and a second staleness in a row is 409 ``catalog_changed``, nothing written.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from h2s_checkout.domain import keys, return_urls
from h2s_checkout.domain.access import Principal
from h2s_checkout.domain.cart import (
    PricedCart,
    cart_fingerprint,
    normalize_address,
    normalize_email,
    price_cart,
)
from h2s_checkout.domain.errors import (
    AmountTooLarge,
    CatalogChanged,
    CheckoutInProgress,
    DatabaseUnavailable,
    IdempotencyKeyReused,
    IllegalTransition,
    OutsideServiceArea,
    PaymentProviderError,
    QuantityOutOfRange,
    RateLimited,
    UnknownSku,
)
from h2s_checkout.domain.limits import CheckoutLimits
from h2s_checkout.domain.machine import INITIAL_STATE, TRANSITIONS
from h2s_checkout.flows.catalog_cache import CatalogCache, CatalogSnapshot
from h2s_checkout.flows.cleanup import fail_and_clean
from h2s_checkout.flows.recent_keys import RecentKeys
from h2s_checkout.flows.replay_batch import ReplayBatcher
from h2s_checkout.observability import tracing
from h2s_checkout.observability.logging import bind_log_fields, get_logger, unbind_log_fields
from h2s_checkout.observability.metrics import PHASE_SECONDS
from h2s_checkout.payments.port import (
    PaymentGateway,
    PaymentProviderFailure,
    ProviderSession,
    SessionLine,
    SessionRequest,
)
from h2s_checkout.store import checkouts
from h2s_checkout.store.pool import UNAVAILABLE_ERRORS, UNAVAILABLE_OR_DOWN, connection
from h2s_checkout.store.traces import (
    Step,
    count_transition,
    record_steps,
    transition_row,
    utcnow,
)

log = get_logger(__name__)

DERIVED_KEY_WINDOW = timedelta(minutes=5)
QUEUE_JOB, CREATE_SESSION = "queue_job", "create_session"
# A refusal (unknown sku, outside the area) looks at the database again first if its copy
# is older than this: a new item or a wider area is seen within it, at most one read per
# worker in this time whatever is sent.
REFUSAL_RECHECK_S = 1.0

_CLAIM_SECONDS = PHASE_SECONDS.labels("claim_and_queue")
_SESSION_SECONDS = PHASE_SECONDS.labels("create_session")
_LINK_SECONDS = PHASE_SECONDS.labels("link_session")
_json = msgspec.json.Encoder()


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
    # The client's address as the API resolved it (X-Forwarded-For from trusted proxies).
    client_address: str | None = None
    # The key with the checkout scope a storefront's server presented, if any: its limit
    # replaces the address's (domain/limits.py).
    caller: Principal | None = None


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """A checkout's answer: a new one's body, or a stored one as PostgreSQL keeps it."""

    status: int
    checkout_id: uuid.UUID
    body: dict[str, Any] | None = None
    stored_json: str | None = None
    replayed: bool = False
    # The checkout's state after phase 3 (for its span); None where it was not read.
    state: str | None = None

    def json(self) -> bytes:
        """The answer's JSON; a stored answer is sent as stored, without a decode."""
        if self.stored_json is not None:
            return self.stored_json.encode()
        return _json.encode(self.body)


@dataclass
class CheckoutSettings:
    public_base_url: str
    session_ttl: timedelta = timedelta(minutes=60)
    lease: timedelta = timedelta(seconds=90)
    clock: Callable[[], datetime] = field(default=utcnow)
    success_url: str | None = None  # H2S_SUCCESS_URL template; None: our own page
    cancel_url: str | None = None  # H2S_CANCEL_URL template; None: our own page
    limits: CheckoutLimits = field(default_factory=CheckoutLimits)
    # Checkouts in phase 1 or 3 at once in this worker; the rest wait their turn in order
    # of arrival (see CheckoutFlow).
    phase_slots: int = 6
    # H2S_CAPTURE: at_booking, or on_completion (the session holds the amount; completing
    # the job captures it, flows/capture.py).
    capture: str = "at_booking"


@dataclass(frozen=True, slots=True)
class Plan:
    """What phases 2 and 3 need. The Stripe request is stored in phase 1 and read back on
    resume, so every attempt sends the same parameters under the same idempotency key."""

    checkout_id: uuid.UUID
    order_id: str
    job_id: uuid.UUID
    session_request: SessionRequest


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


def _claim_keys(command: CheckoutCommand, fingerprint: str) -> checkouts.ClaimKeys:
    return checkouts.ClaimKeys(
        key_source="client" if command.idempotency_key else "derived",
        idempotency_key=command.idempotency_key,
        derived_key=keys.derived_key(
            normalize_email(command.customer.email),
            fingerprint,
            normalize_address(command.customer.address),
        ),
        request_fingerprint=keys.request_digest(command.request_body),
    )


@dataclass(frozen=True, slots=True)
class _Creation:
    """Phase 1's arguments for writing a new checkout (unused by the function otherwise)."""

    new: dict[str, Any]
    steps: list[dict[str, Any]]
    transition: dict[str, Any]
    limits: list[tuple[str, int]]


def _phase_attributes(row: asyncpg.Record, plan: Plan | None) -> dict[str, Any]:
    """A phase span's attributes from phase 1's answer (no checkout: rate limited)."""
    checkout_id = row["checkout_id"]
    return {
        "h2s.checkout_trace_id": None if checkout_id is None else str(checkout_id),
        "h2s.order_id": row["order_id"] or (plan.order_id if plan is not None else None),
        "h2s.checkout.state": row["state"],
        "h2s.checkout.outcome": row["outcome"],
    }


def _plan_attributes(plan: Plan, state: str) -> dict[str, Any]:
    return {
        "h2s.checkout_trace_id": str(plan.checkout_id),
        "h2s.order_id": plan.order_id,
        "h2s.checkout.state": state,
    }


def _key_reused() -> IdempotencyKeyReused:
    return IdempotencyKeyReused("this Idempotency-Key was used with a different request body")


def _plan_from_row(row: asyncpg.Record) -> Plan:
    return Plan(
        checkout_id=row["checkout_id"],
        order_id=row["order_id"],
        job_id=row["job_id"],
        session_request=SessionRequest.from_dict(row["session_request"]),
    )


def _priced(command: CheckoutCommand, snapshot: CatalogSnapshot) -> PricedCart:
    cart = price_cart(command.items, snapshot.items)
    address = command.customer.address
    if not snapshot.area.serves(
        str(address.get("country", "")), str(address.get("postal_code", ""))
    ):
        raise OutsideServiceArea(
            "the shop does not serve this service address (GET /api/service-area has the "
            "postal codes it serves); nothing was written",
        )
    return cart


class CheckoutFlow:
    """The three atomic phases; the Stripe call is never inside a database transaction.

    Phases 1 and 3 take one of ``phase_slots`` slots, in order of arrival, and give it
    back before the Stripe call. Without them the event loop shares the worker between
    every checkout in the same step: a burst of arrivals moves through pricing, phase 1
    and phase 3 side by side and all finish near the end of the burst, so the burst's
    clients come back together and the burst comes round again one Stripe latency later.
    With a few slots the first arrivals finish first, the answers leave spread out, and
    a burst dissolves (docs/benchmarks.md, "Phase slots"). Slots are never held across
    the Stripe call, nor while taking another slot.
    """

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
        self._recent = RecentKeys()
        self._replays = ReplayBatcher(pool)
        self._slots = asyncio.Semaphore(settings.phase_slots)  # FIFO: waiters in order

    async def begin(self, command: CheckoutCommand) -> CheckoutResult:
        # Pricing comes first: a bad cart, or an address outside the service area, is
        # refused before anything is written or counted.
        fingerprint = cart_fingerprint(command.items)
        claim = _claim_keys(command, fingerprint)
        try:
            snapshot, cart = await self._price(command)
        except (UnknownSku, QuantityOutOfRange, AmountTooLarge, OutsideServiceArea):
            # A retry of a checkout accepted before an item was deactivated or the area
            # changed answers what was accepted; only a new checkout is refused (nothing
            # is written either way: a refusal asks as a replay does, one round trip).
            now = self._settings.clock()
            replayed = await self._ask_replay(claim, now)
            if replayed is None or replayed["outcome"] != "replayed":
                raise
            bind_log_fields(checkout_trace_id=str(replayed["checkout_id"]))
            return self._replayed(claim, now, replayed)
        now = self._settings.clock()
        row = None
        plan = None
        with tracing.span("checkout claim_and_queue") as span:
            if self._recent.expects_replay(claim.lookup_key, now):
                # Most likely a retry of an answer this worker gave: asked without a slot
                # (a replay writes no checkout), in one call with the other replays in
                # flight.
                row = await self._ask_replay(claim, now)
            if row is None:
                for attempt in (1, 2):
                    async with self._slots:
                        now = self._settings.clock()
                        plan = self._new_plan(command, cart, now)
                        bind_log_fields(checkout_trace_id=str(plan.checkout_id))
                        creation = self._creation(
                            command, cart, plan, claim, fingerprint, now, snapshot
                        )
                        row = await self._phase_one(claim, now, creation)
                    if row["outcome"] != "stale_catalog":
                        break
                    # A price or the area changed since this worker read them: nothing was
                    # written; read them again and price once more.
                    unbind_log_fields("checkout_trace_id")
                    log.info("checkout.catalog_stale", attempt=attempt)
                    if attempt == 2:
                        raise CatalogChanged(
                            "the catalog changed while this checkout was priced; nothing "
                            "was written, retry",
                            retry_after_s=1,
                        )
                    snapshot = await self._catalog.reload()
                    cart = _priced(command, snapshot)
            if row is None:  # not reached: the loop above ends with phase 1's row or raises
                raise RuntimeError("phase 1 gave no answer")
            if span.recording:  # with tracing off, not even the attributes are built
                span.set(_phase_attributes(row, plan))
        outcome = row["outcome"]
        if outcome == "created" and plan is not None:
            count_transition(row["state"])
            result = await self._finish(plan)
            if result.status == 201:
                self._recent.remember(claim.lookup_key, now + DERIVED_KEY_WINDOW)
            return result
        if outcome == "rate_limited":
            # No checkout was written: no trace id to give or to log.
            unbind_log_fields("checkout_trace_id")
            log.info("checkout.rate_limited", limited_by=row["limited_by"])
            raise RateLimited(
                f"too many new checkouts for this {row['limited_by']}; retry after "
                f"{row['retry_after_s']} s",
                retry_after_s=row["retry_after_s"],
                limited_by=row["limited_by"],
            )
        bind_log_fields(checkout_trace_id=str(row["checkout_id"]))
        if outcome == "replayed":
            return self._replayed(claim, now, row)
        if outcome == "conflict":
            raise CheckoutInProgress(
                "a checkout with this key is in progress; retry shortly",
                checkout_id=str(row["checkout_id"]),
                retry_after_s=1,
            )
        if outcome == "key_reused":
            raise _key_reused()
        if outcome != "resumed":
            raise RuntimeError(f"h2s_begin_checkout answered {outcome!r}")
        # resumed: the attempt that held this checkout died mid-way; carry on from the
        # recovery point with the same order, job and Stripe idempotency key.
        return await self._finish(_plan_from_row(row))

    async def _price(self, command: CheckoutCommand) -> tuple[CatalogSnapshot, PricedCart]:
        """The cart priced and its address checked from the cached copy; a refusal from a
        copy older than REFUSAL_RECHECK_S is checked against a fresh one first."""
        snapshot = await self._catalog.snapshot()
        try:
            return snapshot, _priced(command, snapshot)
        except (UnknownSku, QuantityOutOfRange, OutsideServiceArea):
            fresh = await self._catalog.reload(fresher_than_s=REFUSAL_RECHECK_S)
            if fresh is snapshot:
                raise
            return fresh, _priced(command, fresh)

    async def _ask_replay(self, claim: checkouts.ClaimKeys, now: datetime) -> asyncpg.Record | None:
        """This worker answered the key lately, so most likely a replay: ask for one
        without building a new checkout. None: not one after all."""
        row = await self._replays.replay(checkouts.ReplayCall(claim, now - DERIVED_KEY_WINDOW, now))
        if row["outcome"] == "absent":
            self._recent.forget(claim.lookup_key)
            return None
        return row

    def _replayed(
        self, claim: checkouts.ClaimKeys, now: datetime, row: asyncpg.Record
    ) -> CheckoutResult:
        self._recent.remember(claim.lookup_key, now + DERIVED_KEY_WINDOW)
        return CheckoutResult(
            status=row["response_status"],
            checkout_id=row["checkout_id"],
            stored_json=row["response_json"],
            replayed=True,
        )

    def _creation(
        self,
        command: CheckoutCommand,
        cart: PricedCart,
        plan: Plan,
        claim: checkouts.ClaimKeys,
        fingerprint: str,
        now: datetime,
        snapshot: CatalogSnapshot,
    ) -> _Creation:
        """What phase 1 writes if the request turns out to be a new checkout."""
        # The state machine decides the first transition before anything is sent; the
        # function writes it only if this request turns out to be a new checkout.
        target = TRANSITIONS.target(INITIAL_STATE, QUEUE_JOB)
        received = Step.now(
            "checkout.received",
            key_source=claim.key_source,
            lines=len(cart.lines),
            total_cents=cart.total_cents,
            cart_fingerprint=fingerprint[:16],
        )
        return _Creation(
            new=self._new_checkout(plan, command, cart, now, snapshot.area.version),
            steps=[received.row()],
            transition=transition_row(
                QUEUE_JOB,
                INITIAL_STATE,
                target,
                utcnow(),
                {"order_id": plan.order_id, "job_id": str(plan.job_id)},
            ),
            limits=self._settings.limits.buckets(
                command.client_address, normalize_email(command.customer.email), command.caller
            ),
        )

    async def _phase_one(
        self, claim: checkouts.ClaimKeys, now: datetime, creation: _Creation
    ) -> asyncpg.Record:
        """The whole call of h2s_begin_checkout, with the new checkout it may write."""
        started = time.perf_counter()
        try:
            async with connection(self._pool) as conn:
                row = await checkouts.begin_checkout(
                    conn,
                    claim,
                    window_start=now - DERIVED_KEY_WINDOW,
                    now=now,
                    lease_until=now + self._settings.lease,
                    new=creation.new,
                    steps=creation.steps,
                    transition=creation.transition,
                    limits=creation.limits,
                )
        except UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable("the database is unavailable; nothing was written") from exc
        if row["outcome"] == "created":
            _CLAIM_SECONDS.observe(time.perf_counter() - started)
        return row

    async def resume(self, checkout: asyncpg.Record, *, source: str) -> CheckoutResult:
        """Finish a checkout leased in ``job_queued`` (by the reconciler): phases 2 and 3
        with the stored Stripe request, so Stripe returns the session it may already have."""
        bind_log_fields(checkout_trace_id=str(checkout["checkout_id"]))
        async with connection(self._pool) as conn:
            await record_steps(
                conn,
                checkout["checkout_id"],
                [Step.now("checkout.resumed", source=source, attempt=checkout["attempts"])],
            )
        return await self._finish(_plan_from_row(checkout))

    async def _finish(self, plan: Plan) -> CheckoutResult:
        with _SESSION_SECONDS.time(), tracing.span("checkout create_session") as span:
            if span.recording:
                span.set(_plan_attributes(plan, "job_queued"))
            session, session_ms = await self._create_session(plan)
            if span.recording:
                span.set({"h2s.stripe.session_id": session.id})
        with _LINK_SECONDS.time(), tracing.span("checkout link_session") as span:
            if span.recording:
                span.set(_plan_attributes(plan, "job_queued"))
            result = await self._link_session(plan, session, session_ms)
            if span.recording:
                span.set({"h2s.checkout.state": result.state})
            return result

    # -- phase 1's inputs -----------------------------------------------------------------

    def _new_plan(self, command: CheckoutCommand, cart: PricedCart, now: datetime) -> Plan:
        checkout_id = keys.new_checkout_id()
        order_id = keys.order_id_for(checkout_id)
        job_id = keys.job_id_for(checkout_id)
        base = self._settings.public_base_url
        metadata = {
            "order_id": order_id,
            "job_id": str(job_id),
            "checkout_trace_id": str(checkout_id),
        }
        traceparent = tracing.traceparent()
        if traceparent is not None:
            # The session's events come back with it: their receipt links to this trace.
            metadata["h2s_traceparent"] = traceparent
        return Plan(
            checkout_id=checkout_id,
            order_id=order_id,
            job_id=job_id,
            session_request=SessionRequest(
                idempotency_key=keys.stripe_idempotency_key(checkout_id),
                client_reference_id=order_id,
                customer_email=command.customer.email.strip(),
                lines=tuple(
                    SessionLine(line.name, line.unit_amount_cents, line.quantity, line.currency)
                    for line in cart.lines
                ),
                success_url=return_urls.success_url(order_id, base, self._settings.success_url),
                cancel_url=return_urls.cancel_url(order_id, base, self._settings.cancel_url),
                expires_at=now + self._settings.session_ttl,
                metadata=metadata,
                capture_method="manual"
                if self._settings.capture == "on_completion"
                else "automatic",
            ),
        )

    @staticmethod
    def _new_checkout(
        plan: Plan,
        command: CheckoutCommand,
        cart: PricedCart,
        now: datetime,
        service_area_version: int = 0,
    ) -> dict[str, Any]:
        """Everything phase 1 writes if the request is a new checkout (see the function)."""
        customer = command.customer
        email = customer.email.strip()
        return {
            "checkout_id": str(plan.checkout_id),
            "order_id": plan.order_id,
            "job_id": str(plan.job_id),
            "stripe_idempotency_key": plan.session_request.idempotency_key,
            "request_body": command.request_body,
            "session_request": plan.session_request.to_dict(),
            "email_normalized": normalize_email(email),
            "email": email,
            "name": customer.name,
            "phone": customer.phone,
            "customer": {
                "email": email,
                "name": customer.name,
                "phone": customer.phone,
                "address": customer.address,
            },
            "items": [
                {
                    "sku": line.sku,
                    "name": line.name,
                    "quantity": line.quantity,
                    "unit_amount_cents": line.unit_amount_cents,
                    "amount_cents": line.amount_cents,
                    "catalog_version": line.catalog_version,
                }
                for line in cart.lines
            ],
            # What phase 1 checks are still current before it writes anything.
            "catalog_versions": cart.catalog_versions,
            "service_area_version": service_area_version,
            "subtotal_cents": cart.subtotal_cents,
            "total_cents": cart.total_cents,
            "currency": cart.currency,
            "job_due_at": (now + checkouts.JOB_DUE_AFTER).isoformat(),
            # order_id also in the job's metadata so the seed's verification queries work.
            "job_metadata": {"order_id": plan.order_id, "checkout_trace_id": str(plan.checkout_id)},
        }

    # -- phases 2 and 3 -------------------------------------------------------------------

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
        """Phase 3, one round trip: the session onto the order, the answer stored."""
        source = "job_queued"
        target = TRANSITIONS.target(source, CREATE_SESSION, checkout_id=str(plan.checkout_id))
        body = success_body(plan.checkout_id, plan.order_id, plan.job_id, session)
        created = Step.now(
            "stripe.session_created",
            session_ms,
            session_id=session.id,
            provider_request_id=session.request_id,
            expires_at=session.expires_at,
        )
        at = utcnow()
        try:
            async with self._slots, connection(self._pool) as conn:
                row = await checkouts.link_session(
                    conn,
                    plan.checkout_id,
                    source=source,
                    target=target,
                    at=at,
                    session_id=session.id,
                    job_id=plan.job_id,
                    response_body=body,
                    trace=[
                        created.row(),
                        transition_row(
                            CREATE_SESSION, source, target, at, {"session_id": session.id}
                        ),
                    ],
                )
            if not row["linked"]:
                if row["response_status"] is None:
                    raise IllegalTransition(
                        f"checkout {plan.checkout_id} is no longer in state {source}",
                        checkout_id=str(plan.checkout_id),
                    )
                # A webhook for this session linked it first (the storefront and the event
                # raced); its stored answer is this request's answer.
                return CheckoutResult(
                    status=row["response_status"],
                    checkout_id=plan.checkout_id,
                    stored_json=row["response_json"],
                    state=row["state"],
                )
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
        count_transition(target)
        return CheckoutResult(status=201, checkout_id=plan.checkout_id, body=body, state=target)
