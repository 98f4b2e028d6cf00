"""Count what should never exist: orders without jobs, stuck checkouts, orphan sessions.

The seed verified itself with one query ("orders without jobs, should be 0"); the doctor
runs it beside its siblings, in the database and at the payment provider, and answers
one result per check. Nothing here writes anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from h2s_checkout.payments.port import PaymentGateway, PaymentProviderFailure
from h2s_checkout.store import doctor as sql
from h2s_checkout.store.traces import utcnow

NO_PROVIDER = "no payment provider configured"
# Sessions looked up at the provider at once: far below Stripe's rate limits.
PROVIDER_CONCURRENCY = 8
# Database checks run at once by `h2s-checkout doctor` (its pool's size): the three
# order/job checks each hash a window of rows, and on a database with cores to spare two
# at a time take about half the time, while a diagnostic holds no more than two of a
# production database's connections.
DATABASE_CONCURRENCY = 2


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: ``count`` rows found (None when skipped or when it could not run)."""

    name: str
    meaning: str
    count: int | None
    examples: tuple[str, ...] = ()
    skipped: str | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        if self.skipped is not None:
            return "skipped"
        return "problem" if self.count else "ok"

    @property
    def failing(self) -> bool:
        return self.status in ("problem", "error")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "count": self.count,
            "meaning": self.meaning,
            "examples": list(self.examples),
            "skipped": self.skipped,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    since_hours: int = 48
    stuck_minutes: int = 10
    clock: Callable[[], datetime] = field(default=utcnow)


def any_failing(results: list[CheckResult]) -> bool:
    return any(r.failing for r in results)


async def run_checks(
    db: sql.Queryable,
    gateway: PaymentGateway | None,
    options: DoctorOptions | None = None,
    *,
    concurrency: int = 1,
    provider_unreachable: str | None = None,
) -> list[CheckResult]:
    """Every check, answered in a fixed order. ``gateway`` None skips the provider's
    checks, or, with ``provider_unreachable`` (why a provider that should be checked
    cannot be), fails them with that reason. The database checks run ``concurrency`` at a
    time: more than one needs a pool with as many connections (a single connection runs
    one statement at a time)."""
    options = options or DoctorOptions()
    now = options.clock()
    since = now - timedelta(hours=options.since_hours)
    stuck_before = now - timedelta(minutes=options.stuck_minutes)
    window = f"created in the last {options.since_hours} h"

    limit = asyncio.Semaphore(concurrency)

    async def counted(name: str, meaning: str, query: str, *bounds: datetime) -> CheckResult:
        async with limit:
            n, examples = await sql.count(db, query, *bounds)
        return CheckResult(name, meaning, n, tuple(examples))

    # Every check ends before a failure is raised: none is left running on ``db``.
    answers = await asyncio.gather(
        counted(
            "orders_without_jobs",
            f"orders {window} with no dispatch job (joined on h2s_dispatch_jobs.order_id)",
            sql.ORDERS_WITHOUT_JOBS,
            since,
        ),
        counted(
            "orders_without_jobs_by_metadata",
            f"the seed's query: orders {window} that no job names in metadata->>'order_id'",
            sql.ORDERS_WITHOUT_JOBS_BY_METADATA,
            since,
        ),
        counted(
            "jobs_without_orders",
            f"dispatch jobs {window} whose order_id has no order",
            sql.JOBS_WITHOUT_ORDERS,
            since,
        ),
        counted(
            "stuck_checkouts",
            f"checkouts still pending_payment, job_queued or failed "
            f"{options.stuck_minutes} min after their last change",
            sql.STUCK_CHECKOUTS,
            stuck_before,
        ),
        counted(
            "sessions_past_expiry_without_outcome",
            f"checkouts at session_created {options.stuck_minutes} min after the session "
            f"expired: no webhook came and the reconciler did not settle them",
            sql.SESSIONS_PAST_EXPIRY,
            stuck_before,
        ),
        counted(
            "paid_after_cleanup",
            f"checkouts paid after they had ended (cleaned up, expired, cancelled), in the "
            f"last {options.since_hours} h, whose payment is not refunded yet",
            sql.PAID_AFTER_CLEANUP,
            since,
        ),
        counted(
            "refunds_failed",
            f"orders whose refund the provider failed (checkout refund_failed), changed in "
            f"the last {options.since_hours} h: cancel again to retry, or refund by hand",
            sql.REFUNDS_FAILED,
            since,
        ),
        counted(
            "refunds_not_settled",
            f"refunds owed or pending {options.stuck_minutes} min after their last change: "
            f"the reconciler did not get the provider to settle them",
            sql.REFUNDS_NOT_SETTLED,
            stuck_before,
        ),
        counted(
            "holds_lapsing_within_24h",
            "orders whose card hold (pay on completion) lapses within 24 h, or has passed "
            "its capture date: complete the job or contact the customer first",
            sql.HOLDS_LAPSING,
            now + timedelta(hours=24),
        ),
        counted(
            "authorizations_expired",
            f"orders whose card hold lapsed before the job was done, in the last "
            f"{options.since_hours} h: nothing can be charged; their jobs are flagged",
            sql.AUTHORIZATIONS_EXPIRED,
            since,
        ),
        counted(
            "captures_not_settled",
            f"captures owed {options.stuck_minutes} min after their last change that the "
            f"provider has not confirmed",
            sql.CAPTURES_NOT_SETTLED,
            stuck_before,
        ),
        counted(
            "unsettled_cleanups",
            f"cleaned checkouts whose session the provider has not yet been made to end, "
            f"{options.stuck_minutes} min after cleanup",
            sql.UNSETTLED_CLEANUPS,
            stuck_before,
        ),
        counted(
            "undelivered_events",
            f"order events {window}, older than {options.stuck_minutes} min, that no enabled "
            f"event endpoint has received",
            sql.UNDELIVERED_EVENTS,
            stuck_before,
            since,
        ),
        return_exceptions=True,
    )
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    results = [a for a in answers if isinstance(a, CheckResult)]
    provider_checks = [
        await _orders_missing_at_provider(db, gateway, since, window),
        await _sessions_without_live_order(db, gateway, since, options.since_hours),
    ]
    if gateway is None and provider_unreachable is not None:
        # Not "skipped": a doctor that could not look must not read as a clean bill.
        provider_checks = [
            CheckResult(
                r.name,
                r.meaning,
                None,
                error=f"cannot reach the payment provider: {provider_unreachable}",
            )
            for r in provider_checks
        ]
    return results + provider_checks


async def _orders_missing_at_provider(
    db: sql.Queryable, gateway: PaymentGateway | None, since: datetime, window: str
) -> CheckResult:
    name = "orders_missing_at_provider"
    meaning = f"orders {window} whose session id the payment provider does not know"
    if gateway is None:
        return CheckResult(name, meaning, None, skipped=NO_PROVIDER)
    orders = await sql.orders_with_sessions(db, since)
    limit = asyncio.Semaphore(PROVIDER_CONCURRENCY)
    missing: list[str] = []
    failures: list[PaymentProviderFailure] = []

    async def look_up(order_id: str, session_id: str) -> None:
        async with limit:
            try:
                await gateway.retrieve_session(session_id)
            except PaymentProviderFailure as failure:
                if failure.http_status == 404:
                    missing.append(order_id)
                else:
                    failures.append(failure)

    await asyncio.gather(*(look_up(o, s) for o, s in orders))
    newest_first = {order_id: i for i, (order_id, _) in enumerate(orders)}
    missing.sort(key=newest_first.__getitem__)
    error = None
    if failures:
        error = (
            f"{len(failures)} of {len(orders)} sessions could not be looked up: "
            f"{failures[0].message}"
        )
    return CheckResult(name, meaning, len(missing), tuple(missing[:5]), error=error)


async def _sessions_without_live_order(
    db: sql.Queryable, gateway: PaymentGateway | None, since: datetime, since_hours: int
) -> CheckResult:
    name = "provider_sessions_without_live_order"
    meaning = (
        f"open or paid sessions created at the provider in the last {since_hours} h whose "
        f"order is missing, or cancelled, expired or cleaned up and not refunded"
    )
    if gateway is None:
        return CheckResult(name, meaning, None, skipped=NO_PROVIDER)
    live: list[tuple[str, str]] = []
    try:
        async for session in gateway.list_sessions(int(since.timestamp())):
            # A session another system made on the same account names no order of ours.
            order_id = session.client_reference_id or session.metadata.get("order_id")
            payable_or_paid = session.status == "open" or session.payment_status == "paid"
            if order_id and payable_or_paid:
                live.append((session.id, order_id))
    except PaymentProviderFailure as failure:
        return CheckResult(name, meaning, None, error=f"listing sessions failed: {failure.message}")
    orders = await sql.orders_by_id(db, sorted({order_id for _, order_id in live}))
    orphans = [
        session_id
        for session_id, order_id in live
        if order_id not in orders
        or (
            (orders[order_id][0] in ("cancelled", "expired") or orders[order_id][1] == "cleaned")
            and not orders[order_id][2]
        )
    ]
    return CheckResult(name, meaning, len(orphans), tuple(orphans[:5]))
