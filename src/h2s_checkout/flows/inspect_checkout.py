"""Read one checkout for people on call: its rows, its failures and its timeline."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from h2s_checkout.domain.errors import NotFound
from h2s_checkout.payments.port import PaymentGateway, PaymentProviderFailure
from h2s_checkout.store import checkouts, outbox, refunds, traces
from h2s_checkout.store.pool import connection


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _plain(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: (str(v) if isinstance(v, uuid.UUID) else _iso(v)) for k, v in row.items()}


async def _find(conn: asyncpg.Connection, ref: str) -> asyncpg.Record:
    """A checkout by its trace id or by its order id."""
    row = None
    if ref.upper().startswith("ORD-"):
        row = await checkouts.get_checkout_by_order(conn, ref.upper())
    else:
        try:
            row = await checkouts.get_checkout(conn, uuid.UUID(ref))
        except ValueError:
            row = None
    if row is None:
        raise NotFound(f"no checkout {ref!r}")
    return row


def trace_url(template: str | None, trace_id: str | None) -> str | None:
    """A trace viewer's page for an OpenTelemetry trace (H2S_TRACE_URL_TEMPLATE)."""
    if template is None or trace_id is None:
        return None
    return template.replace("{trace_id}", trace_id)


async def timeline(
    pool: asyncpg.Pool, ref: str, trace_url_template: str | None = None
) -> dict[str, Any]:
    """The checkout's steps in order; each with the OpenTelemetry trace id of the request
    or pass that made it (when that was traced), and its viewer's URL when there is one."""
    async with connection(pool) as conn:
        checkout = await _find(conn, ref)
        rows = await traces.timeline(conn, checkout["checkout_id"])
        failures = await checkouts.get_failures(conn, checkout["checkout_id"])
        events = (
            await outbox.order_events(conn, checkout["order_id"]) if checkout["order_id"] else []
        )
    return {
        "checkout_trace_id": str(checkout["checkout_id"]),
        "state": checkout["state"],
        "order_id": checkout["order_id"],
        "job_id": str(checkout["job_id"]) if checkout["job_id"] else None,
        "session_id": checkout["session_id"],
        "key_source": checkout["key_source"],
        "created_at": checkout["created_at"].isoformat(),
        "updated_at": checkout["updated_at"].isoformat(),
        "steps": [
            {
                "seq": row["seq"],
                "kind": row["kind"],
                "event": row["event"],
                "from_state": row["from_state"],
                "to_state": row["to_state"],
                "at": row["at"].isoformat(),
                "duration_ms": row["duration_ms"],
                "since_previous_ms": (
                    round(float(row["since_previous_ms"]), 3)
                    if row["since_previous_ms"] is not None
                    else None
                ),
                "detail": row["detail"],
                "otel_trace_id": row["otel_trace_id"],
                "trace_url": trace_url(trace_url_template, row["otel_trace_id"]),
            }
            for row in rows
        ],
        "failures": [_plain(f) for f in failures],
        # Each outbound event about the order, with its deliveries and their attempts.
        "events": [{**e, "created_at": e["created_at"].isoformat()} for e in events],
    }


async def checkout_view(pool: asyncpg.Pool, gateway: PaymentGateway, ref: str) -> dict[str, Any]:
    """The checkout with its order, its job and the session as the provider sees it now."""
    async with connection(pool) as conn:
        checkout = await _find(conn, ref)
        order = (
            await checkouts.get_order(conn, checkout["order_id"]) if checkout["order_id"] else None
        )
        job = await checkouts.get_job_by_order(conn, checkout["order_id"]) if order else None
        owed = await refunds.refunds_of(conn, checkout["checkout_id"])
    provider: dict[str, Any] | None = None
    if checkout["session_id"]:
        try:
            session = await gateway.retrieve_session(checkout["session_id"])
            provider = {
                "found": True,
                "id": session.id,
                "status": session.status,
                "payment_status": session.payment_status,
                "client_reference_id": session.client_reference_id,
                "metadata": session.metadata,
                "amount_total": session.amount_total,
                "url": session.url,
            }
        except PaymentProviderFailure as failure:
            provider = {
                "found": False,
                "http_status": failure.http_status,
                "provider_code": failure.provider_code,
            }
    order_view = _plain(order)
    return {
        "checkout_trace_id": str(checkout["checkout_id"]),
        "state": checkout["state"],
        "order": order_view,
        "job": _plain(job),
        "provider_session": provider,
        "refunds": [_plain(r) for r in owed],
    }
