"""An order as operators and the dispatch system see it: the checkout's state, the order
with what was held, captured, refunded and what remains, its job, its capture and refunds."""

from __future__ import annotations

from typing import Any

import asyncpg

from h2s_checkout.domain.errors import NotFound
from h2s_checkout.store import captures, checkouts
from h2s_checkout.store import refunds as refunds_store
from h2s_checkout.store.pool import connection


async def order_view(pool: asyncpg.Pool, order_id: str) -> dict[str, Any]:
    """The answer of a cancel, a complete, a refund and GET /api/orders/{id}."""
    async with connection(pool) as conn:
        checkout = await checkouts.get_checkout_by_order(conn, order_id)
        order = await checkouts.get_order(conn, order_id)
        job = await checkouts.get_job_by_order(conn, order_id)
        found = await refunds_store.refunds_of(conn, checkout["checkout_id"]) if checkout else []
        capture = await captures.capture_of_order(conn, order_id) if checkout else None
    if checkout is None or order is None:
        raise NotFound(f"no order {order_id!r}")
    last = found[-1] if found else None
    captured = order["amount_paid_cents"] or 0
    # The order's own refunds; a late payment's refund gives back money of no order.
    own = [r for r in found if r["cause"] != "late_payment"]
    refunded = sum(r["amount_cents"] for r in own if r["status"] == "succeeded")
    in_flight = sum(
        r["amount_cents"] for r in own if r["status"] in ("requested", "pending", "requires_action")
    )
    return {
        "ok": True,
        "checkout_trace_id": str(checkout["checkout_id"]),
        "state": checkout["state"],
        "capture_policy": checkout["capture_policy"],
        "order": {
            "order_id": order["order_id"],
            "status": order["status"],
            "total_cents": order["total_cents"],
            "amount_paid_cents": order["amount_paid_cents"],
            "currency": order["currency"],
            "amount_authorized_cents": order["amount_authorized_cents"],
            "authorization_expires_at": _iso(order["authorization_expires_at"]),
            "amount_captured_cents": captured,
            "amount_refunded_cents": refunded,
            "amount_refund_pending_cents": in_flight,
            "amount_remaining_cents": captured - refunded,
        },
        "job": (
            {
                "job_id": str(job["job_id"]),
                "status": job["status"],
                "completed_at": _iso(job["completed_at"]),
                "payment_flag": job["payment_flag"],
            }
            if job
            else None
        ),
        "capture": capture_view(capture) if capture is not None else None,
        "refund": refund_view(last) if last is not None else None,
        "refunds": [refund_view(r) for r in found],
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def capture_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["capture_id"]),
        "amount_cents": row["amount_cents"],
        "amount_captured_cents": row["amount_captured_cents"],
        "currency": row["currency"],
        "status": row["status"],
        "failure_code": row["failure_code"],
        "note": row["note"],
        "actor": row["actor"],
        "created_at": row["created_at"].isoformat(),
    }


def refund_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["refund_id"]),
        "stripe_refund_id": row["stripe_refund_id"],
        "attempt": row["attempt"],
        "cause": row["cause"],
        "reason": row["reason"],
        "amount_cents": row["amount_cents"],
        "currency": row["currency"],
        "status": row["status"],
        "failure_reason": row["failure_reason"],
        "actor": row["actor"],
        "created_at": row["created_at"].isoformat(),
    }
