"""The reconciler: finishes or cleans up checkouts left behind, and asks Stripe about
sessions whose webhook never came. Runs in the service on an interval and as a command."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from h2s_checkout.domain.access import RECONCILER
from h2s_checkout.domain.errors import CheckoutError
from h2s_checkout.flows import refunds
from h2s_checkout.flows.begin_checkout import CheckoutFlow
from h2s_checkout.flows.capture import apply_lapse, send_capture
from h2s_checkout.flows.cleanup import fail_and_clean, settle_provider_session
from h2s_checkout.flows.settle import AUTHORIZED, EXPIRED, PAID, is_hold, settle
from h2s_checkout.observability import tracing
from h2s_checkout.observability.logging import acting_as, bind_log_fields, get_logger
from h2s_checkout.observability.metrics import RECONCILER_ACTIONS
from h2s_checkout.payments.port import PaymentGateway, PaymentProviderFailure, SessionRequest
from h2s_checkout.store import captures, checkouts
from h2s_checkout.store import reconcile as sql
from h2s_checkout.store import refunds as refunds_store
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import Step, record_steps, utcnow

log = get_logger(__name__)


class StuckCheckout(CheckoutError):
    code = "stuck_checkout"
    status = 500


@dataclass(frozen=True)
class ReconcileSettings:
    # A checkout idle this long with no live lease is taken over (the lease is 90 s).
    stuck_after: timedelta = timedelta(seconds=90)
    # Past this age a stuck checkout is cleaned up instead of finished.
    give_up_after: timedelta = timedelta(minutes=15)
    # A session this far past its expires_at with no event is asked about.
    expiry_grace: timedelta = timedelta(minutes=2)
    lease: timedelta = timedelta(seconds=90)
    batch: int = 50
    # A refund the provider left pending this long with no event is asked about.
    refund_ask_after: timedelta = timedelta(minutes=2)
    # Refund payments that arrived for a checkout that had already ended (the shop's
    # H2S_REFUND_LATE_PAYMENTS); off, they are only counted by doctor.
    refund_late_payments: bool = True


@dataclass
class ReconcileReport:
    actions: Counter[str] = field(default_factory=Counter)

    def count(self, action: str) -> None:
        self.actions[action] += 1

    def __str__(self) -> str:
        if not self.actions:
            return "nothing to reconcile"
        return ", ".join(f"{name}: {n}" for name, n in sorted(self.actions.items()))


class Reconciler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: PaymentGateway,
        flow: CheckoutFlow,
        settings: ReconcileSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._flow = flow
        self._settings = settings or ReconcileSettings()
        self._clock = clock

    async def run_once(self, actor: str = RECONCILER) -> ReconcileReport:
        """One pass. Its log lines and every trace row it writes name ``actor``: the
        reconciler itself, or the key that asked for the pass (POST /api/reconcile)."""
        with acting_as(actor), tracing.span("reconcile pass") as span:
            report = await self._pass()
            span.set({f"h2s.reconcile.{action}": n for action, n in report.actions.items()})
            return report

    async def _pass(self) -> ReconcileReport:
        report = ReconcileReport()
        now = self._clock()
        s = self._settings
        async with connection(self._pool) as conn:
            stuck = await sql.lease_stuck(
                conn,
                now=now,
                idle_since=now - s.stuck_after,
                until=now + s.lease,
                limit=s.batch,
            )
        for checkout in stuck:
            await self._recover(checkout, now, report)
        async with connection(self._pool) as conn:
            due = await sql.lease_open_sessions(
                conn,
                now=now,
                expired_before=now - s.expiry_grace,
                until=now + s.lease,
                limit=s.batch,
            )
        for checkout in due:
            await self._ask_about_session(checkout, report)
        async with connection(self._pool) as conn:
            unsettled = await sql.lease_unsettled(conn, now=now, until=now + s.lease, limit=s.batch)
        for checkout in unsettled:
            await self._settle_cleaned(checkout, report)
        async with connection(self._pool) as conn:
            open_refunds = await refunds_store.lease_open(
                conn,
                now=now,
                asked_after=now - s.refund_ask_after,
                include_late_payments=s.refund_late_payments,
                until=now + s.lease,
                limit=s.batch,
            )
        for refund in open_refunds:
            await self._settle_refund(refund, report)
        async with connection(self._pool) as conn:
            owed = await captures.lease_open_captures(
                conn, now=now, until=now + s.lease, limit=s.batch
            )
        for capture in owed:
            # A capture owed whose request died (or whose provider failed): the same key
            # again, so Stripe captures once whatever the first try did.
            bind_log_fields(checkout_trace_id=str(capture["checkout_id"]))
            result = await send_capture(self._pool, self._gateway, capture, source="reconciler")
            report.count(f"capture_{result}")
        async with connection(self._pool) as conn:
            past = await captures.lease_past_holds(
                conn, now=now, until=now + s.lease, limit=s.batch
            )
        for hold in past:
            await self._ask_about_hold(hold, report)
        if report.actions:
            log.info("reconcile.pass", **dict(report.actions))
            for action, n in report.actions.items():
                RECONCILER_ACTIONS.labels(action).inc(n)
        return report

    async def _recover(
        self, checkout: asyncpg.Record, now: datetime, report: ReconcileReport
    ) -> None:
        young = checkout["created_at"] > now - self._settings.give_up_after
        if checkout["state"] == "job_queued" and young:
            try:
                await self._flow.resume(checkout, source="reconciler")
                report.count("resumed")
            except CheckoutError as exc:
                # The flow's own error path has cleaned it up (or left it for next time).
                report.count(f"resume_failed:{exc.code}")
            return
        request = checkout["session_request"]
        await fail_and_clean(
            self._pool,
            self._gateway,
            checkout["checkout_id"],
            phase="reconcile",
            error=StuckCheckout(f"checkout stuck in {checkout['state']} past the deadline"),
            session_id=checkout["session_id"],
            replay=SessionRequest.from_dict(request) if request else None,
            session_may_exist=True,
        )
        report.count("cleaned")

    async def _ask_about_session(self, checkout: asyncpg.Record, report: ReconcileReport) -> None:
        """A session past its expiry with no event: ask Stripe and apply its answer."""
        try:
            session = await self._gateway.retrieve_session(checkout["session_id"])
            if session.status == "open":
                session = await self._gateway.expire_session(session.id)
        except PaymentProviderFailure as failure:
            report.count(f"provider_failed:{failure.provider_code}")
            async with connection(self._pool) as conn:
                await sql.release(conn, checkout["checkout_id"])
            return
        if session.status == "complete" and session.payment_status in (
            "paid",
            "no_payment_required",
        ):
            outcome = PAID
        elif session.status == "expired":
            outcome = EXPIRED
        else:
            outcome = None  # complete but unpaid: a delayed payment on its way, or a hold
        intent = None
        if outcome is None and session.status == "complete" and session.payment_intent:
            try:
                intent = await self._gateway.retrieve_payment_intent(session.payment_intent)
            except PaymentProviderFailure as failure:
                report.count(f"provider_failed:{failure.provider_code}")
            if is_hold(intent):
                outcome = AUTHORIZED
        async with connection(self._pool) as conn, conn.transaction():
            current = await checkouts.get_checkout(conn, checkout["checkout_id"], for_update=True)
            if outcome is not None and current is not None:
                result = await settle(
                    conn,
                    current,
                    session,
                    outcome,
                    source="reconciler",
                    at=self._clock(),
                    intent=intent,
                )
                report.count(f"session_{result}")
            await sql.release(conn, checkout["checkout_id"])

    async def _ask_about_hold(self, hold: asyncpg.Record, report: ReconcileReport) -> None:
        """A hold past its capture date whose payment_intent.canceled never came: asked,
        and lapsed if Stripe let it go."""
        try:
            intent = await self._gateway.retrieve_payment_intent(hold["payment_intent"])
        except PaymentProviderFailure as failure:
            report.count(f"provider_failed:{failure.provider_code}")
            intent = None
        async with connection(self._pool) as conn, conn.transaction():
            current = await checkouts.get_checkout(conn, hold["checkout_id"], for_update=True)
            if intent is not None and intent.status == "canceled" and current is not None:
                result = await apply_lapse(conn, current, intent, source="reconciler")
                report.count(f"hold_{result}")
            await sql.release(conn, hold["checkout_id"])

    async def _settle_cleaned(self, checkout: asyncpg.Record, report: ReconcileReport) -> None:
        """A cleaned checkout whose session could not be expired: try again, and record a
        payment that slipped through as needing a refund."""
        steps: list[tuple[str, dict[str, Any]]] = []
        request = checkout["session_request"]
        settled, session_id = await settle_provider_session(
            self._gateway,
            steps,
            checkout["session_id"],
            SessionRequest.from_dict(request) if request else None,
            session_may_exist=True,
        )
        paid = None
        if settled and session_id:
            try:
                session = await self._gateway.retrieve_session(session_id)
                if session.status == "complete" and session.payment_status == "paid":
                    paid = session
            except PaymentProviderFailure:
                settled = False
        async with connection(self._pool) as conn, conn.transaction():
            current = await checkouts.get_checkout(conn, checkout["checkout_id"], for_update=True)
            await record_steps(
                conn,
                checkout["checkout_id"],
                [Step.now(event, source="reconciler", **detail) for event, detail in steps],
            )
            if paid is not None and current is not None:
                await settle(conn, current, paid, PAID, source="reconciler", at=self._clock())
            await checkouts.set_settlement(
                conn, checkout["checkout_id"], session_id=session_id, needs_settlement=not settled
            )
            await sql.release(conn, checkout["checkout_id"])
        report.count("settled" if settled else "settlement_pending")

    async def _settle_refund(self, refund: asyncpg.Record, report: ReconcileReport) -> None:
        """A refund not yet sent (its request died, or the provider failed): sent again
        with the same key. One sent but pending with no event: asked about."""
        bind_log_fields(checkout_trace_id=str(refund["checkout_id"]))
        if refund["status"] == "requested":
            answer = await refunds.send(self._pool, self._gateway, refund, source="reconciler")
            report.count(
                f"refund_{answer.status or refunds.UNKNOWN_YET}" if answer else "refund_send_failed"
            )
            return
        try:
            answer = await self._gateway.retrieve_refund(refund["stripe_refund_id"])
        except PaymentProviderFailure as failure:
            report.count(f"refund_provider_failed:{failure.provider_code}")
            async with connection(self._pool) as conn:
                await refunds_store.release(conn, refund["refund_id"])
            return
        async with connection(self._pool) as conn, conn.transaction():
            # Checkout first, then the refund (flows/refunds.py send).
            await checkouts.get_checkout(conn, refund["checkout_id"], for_update=True)
            locked = await refunds_store.get_refund_for_update(conn, refund["refund_id"])
            assert locked is not None
            result = await refunds.apply_answer(
                conn, locked, answer, source="reconciler", at=self._clock()
            )
            await refunds_store.release(conn, refund["refund_id"])
        report.count(f"refund_{result}")
