"""The error path: record the failure, expire any session, cancel order and job together."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from h2s_checkout.domain.errors import CheckoutError
from h2s_checkout.domain.machine import CLEANABLE_STATES, TRANSITIONS
from h2s_checkout.observability.logging import get_logger
from h2s_checkout.payments.port import PaymentGateway, PaymentProviderFailure, SessionRequest
from h2s_checkout.store import checkouts
from h2s_checkout.store.pool import UNAVAILABLE_ERRORS, connection
from h2s_checkout.store.traces import Step, write_transition

log = get_logger(__name__)

# Errors after which the cleanup transaction has written nothing.
_NOTHING_WRITTEN: tuple[type[BaseException], ...] = (CheckoutError, *UNAVAILABLE_ERRORS)


def error_body(checkout_id: uuid.UUID, code: str, message: str) -> dict[str, Any]:
    return {
        "ok": False,
        "checkout_trace_id": str(checkout_id),
        "error": {"code": code, "message": message},
    }


async def settle_provider_session(
    gateway: PaymentGateway,
    steps: list[tuple[str, dict[str, Any]]],
    session_id: str | None,
    replay: SessionRequest | None,
    *,
    session_may_exist: bool,
) -> tuple[bool, str | None]:
    """Make sure no payable session is left for a checkout that is being cleaned.

    When a session may exist without our knowing its id (a timeout, a dropped connection,
    a 5xx, a crash), replaying the create with the same idempotency key returns it if
    Stripe made it; then it is expired. Returns (settled, session id); not settled means
    the provider could not be asked or refused, and the reconciler must try again.
    """
    if session_id is None and session_may_exist and replay is not None:
        try:
            session_id = (await gateway.create_session(replay)).id
            steps.append(("stripe.session_recovered", {"session_id": session_id}))
        except PaymentProviderFailure as again:
            if again.http_status == 400 and again.provider_code != "idempotency_error":
                # Refused as a new request (say its expiry has passed): none was made.
                return True, None
            steps.append(("stripe.settlement_pending", {"provider_code": again.provider_code}))
            return False, None
    if session_id is None:
        return True, None
    try:
        session = await gateway.expire_session(session_id)
        steps.append(
            ("stripe.session_expired", {"session_id": session_id, "status": session.status})
        )
        return True, session_id
    except PaymentProviderFailure as failure:
        if failure.http_status == 400:
            # Stripe refuses to expire a session that is no longer open: it already ended
            # (expired, or paid, which the webhook or the reconciler records for refund).
            steps.append(("stripe.session_not_open", {"session_id": session_id}))
            return True, session_id
        steps.append(
            (
                "stripe.expire_failed",
                {
                    "session_id": session_id,
                    "provider_code": failure.provider_code,
                    "http_status": failure.http_status,
                },
            )
        )
        return False, session_id


def _failure_fields(error: BaseException) -> dict[str, Any]:
    if isinstance(error, PaymentProviderFailure):
        return {
            "error_code": "payment_provider_error",
            "error_class": type(error.__cause__ or error).__name__,
            "message": f"{error.operation}: {error.message}",
            "provider_request_id": error.request_id,
            "provider_code": error.provider_code,
            "http_status": error.http_status,
        }
    code = error.code if isinstance(error, CheckoutError) else "internal_error"
    return {
        "error_code": code,
        "error_class": type(error).__name__,
        "message": str(error) or type(error).__name__,
    }


async def fail_and_clean(
    pool: asyncpg.Pool,
    gateway: PaymentGateway,
    checkout_id: uuid.UUID,
    *,
    phase: str,
    error: BaseException,
    duration_ms: float | None = None,
    session_id: str | None = None,
    replay: SessionRequest | None = None,
    session_may_exist: bool = False,
) -> None:
    """failure row, then ``failed -> cleaned`` with order and job cancelled, in one transaction."""
    settle_steps: list[tuple[str, dict[str, Any]]] = []
    ambiguous = isinstance(error, PaymentProviderFailure) and error.ambiguous
    settled, session_id = await settle_provider_session(
        gateway, settle_steps, session_id, replay, session_may_exist=session_may_exist or ambiguous
    )
    fields = _failure_fields(error)
    status = 502 if isinstance(error, PaymentProviderFailure) else 500
    body = error_body(
        checkout_id,
        fields["error_code"],
        "the payment provider failed; the order and the job were cancelled"
        if status == 502
        else "the checkout failed; the order and the job were cancelled",
    )
    try:
        async with connection(pool) as conn, conn.transaction():
            row = await checkouts.get_checkout(conn, checkout_id, for_update=True)
            if row is None or row["state"] not in CLEANABLE_STATES:
                return
            steps = [
                Step.now(
                    f"{phase}.failed",
                    duration_ms,
                    **{k: v for k, v in fields.items() if k != "message" and v is not None},
                ),
                *(Step.now(event, **detail) for event, detail in settle_steps),
            ]
            await checkouts.insert_failure(conn, checkout_id, phase=phase, **fields)
            state = row["state"]
            if state != "failed":
                failed = TRANSITIONS.target(state, "fail", checkout_id=str(checkout_id))
                await write_transition(
                    conn,
                    checkout_id,
                    "fail",
                    state,
                    failed,
                    steps=steps,
                    detail={"phase": phase, "code": fields["error_code"]},
                )
                state, steps = failed, []
            cancelled = await checkouts.cancel_order_and_job(conn, checkout_id)
            await checkouts.store_response(conn, checkout_id, status, body)
            await checkouts.set_settlement(
                conn, checkout_id, session_id=session_id, needs_settlement=not settled
            )
            await write_transition(
                conn,
                checkout_id,
                "clean",
                state,
                TRANSITIONS.target(state, "clean", checkout_id=str(checkout_id)),
                steps=steps,
                detail={"order_and_job_cancelled": cancelled},
            )
    except _NOTHING_WRITTEN as exc:
        # Nothing could be written: the checkout stays in its non-final state and the
        # reconciler cleans it up once the database is back.
        log.error("checkout.cleanup_deferred", error=type(exc).__name__, phase=phase)
    else:
        log.warning(
            "checkout.cleaned",
            phase=phase,
            **{
                k: v
                for k, v in fields.items()
                if k in ("error_code", "provider_code", "http_status")
            },
        )
