"""Subscribers to outbound events: register, list, delete, rotate a secret, see and retry
deliveries. A URL is judged before anything is written (docs/events.md); a host name is
judged when it is connected to (flows/event_delivery.py GuardedResolver), so that
registering makes no DNS query and a name re-pointed later is still caught."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from h2s_checkout.domain.errors import EndpointNotEnabled, InvalidRequest, NotFound
from h2s_checkout.domain.events import (
    ALL_TYPES,
    SUBSCRIBABLE_TYPES,
    ReservedTargets,
    check_url,
    new_secret,
)
from h2s_checkout.observability.logging import get_logger
from h2s_checkout.store import outbox
from h2s_checkout.store.pool import connection
from h2s_checkout.store.traces import utcnow

log = get_logger(__name__)

ENVIRONMENT_ENDPOINT_ID = "ep_env"
ROTATION_OVERLAP = timedelta(hours=24)
DELIVERY_STATUSES = ("pending", "delivered", "failed", "cancelled")
MAX_DESCRIPTION_CHARS = 500


def _event_types(requested: list[str] | None) -> list[str]:
    if requested is None:
        return [ALL_TYPES]
    if not requested:
        raise InvalidRequest("event_types must name at least one type, or be left out")
    unknown = sorted({t for t in requested if t != ALL_TYPES and t not in SUBSCRIBABLE_TYPES})
    if unknown:
        raise InvalidRequest(
            f"unknown event type {', '.join(unknown)}: use {', '.join(SUBSCRIBABLE_TYPES)} or *"
        )
    return [ALL_TYPES] if ALL_TYPES in requested else sorted(set(requested))


def public_view(row: asyncpg.Record, *, secret: str | None = None) -> dict[str, Any]:
    return {
        "id": row["endpoint_id"],
        "url": row["url"],
        "description": row["description"],
        "event_types": list(row["event_types"]),
        "status": row["status"],
        "status_reason": row["status_reason"],
        "source": row["source"],
        "created_at": row["created_at"],
        "previous_secret_expires_at": row["previous_secret_until"],
        **({"secret": secret} if secret is not None else {}),
    }


async def register(
    pool: asyncpg.Pool,
    *,
    url: str,
    event_types: list[str] | None,
    description: str | None,
    allow_private: bool,
    reserved: ReservedTargets | None = None,
) -> dict[str, Any]:
    """A new enabled endpoint with its secret (shown this once); never one at a
    ``reserved`` target (this service, its payment provider)."""
    target = check_url(url.strip(), allow_private=allow_private, reserved=reserved)
    types = _event_types(event_types)
    text = (description or "").strip()
    if len(text) > MAX_DESCRIPTION_CHARS or any(ord(c) < 32 and c != " " for c in text):
        raise InvalidRequest(
            f"description must be at most {MAX_DESCRIPTION_CHARS} characters of plain text"
        )
    secret = new_secret()
    async with connection(pool) as conn:
        row = await outbox.insert_endpoint(
            conn,
            "ep_" + secrets.token_hex(12),
            url=target.url,
            description=text,
            event_types=types,
            secret=secret,
        )
    log.info("event_endpoint.registered", endpoint_id=row["endpoint_id"], event_types=types)
    return public_view(row, secret=secret)


async def list_all(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    async with connection(pool) as conn:
        return [public_view(r) for r in await outbox.list_endpoints(conn)]


async def delete(pool: asyncpg.Pool, endpoint_id: str) -> None:
    async with connection(pool) as conn:
        if not await outbox.end_endpoint(
            conn, endpoint_id, status="deleted", reason="deleted through the API"
        ):
            raise NotFound(f"no event endpoint {endpoint_id!r}")
    log.info("event_endpoint.deleted", endpoint_id=endpoint_id)


async def rotate_secret(
    pool: asyncpg.Pool, endpoint_id: str, *, clock: Callable[[], datetime] = utcnow
) -> dict[str, Any]:
    """A new secret; the old one keeps signing beside it for ``ROTATION_OVERLAP``."""
    secret = new_secret()
    async with connection(pool) as conn:
        row = await outbox.rotate_secret(
            conn, endpoint_id, secret=secret, previous_until=clock() + ROTATION_OVERLAP
        )
    if row is None:
        raise NotFound(f"no event endpoint {endpoint_id!r}")
    log.info("event_endpoint.secret_rotated", endpoint_id=endpoint_id)
    return public_view(row, secret=secret)


async def deliveries(
    pool: asyncpg.Pool, endpoint_id: str, *, status: str | None, limit: int
) -> list[dict[str, Any]]:
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    async with connection(pool) as conn:
        if await outbox.get_endpoint(conn, endpoint_id) is None:
            raise NotFound(f"no event endpoint {endpoint_id!r}")
        rows = await outbox.list_deliveries(conn, endpoint_id, status=status, limit=limit)
    return [
        {
            "id": r["delivery_id"],
            "event_id": r["event_id"],
            "event_type": r["type"],
            "order_id": r["order_id"],
            "sequence": r["sequence"],
            "status": r["status"],
            "attempts": r["attempt_list"],
            "next_attempt_at": r["next_attempt_at"] if r["status"] == "pending" else None,
            "last_status_code": r["last_status_code"],
            "last_error": r["last_error"],
            "created_at": r["created_at"],
            "delivered_at": r["delivered_at"],
        }
        for r in rows
    ]


async def retry(pool: asyncpg.Pool, delivery_id: str) -> None:
    """Send a delivery again, at once, with a fresh retry schedule (same webhook-id)."""
    async with connection(pool) as conn:
        found = await outbox.get_delivery(conn, delivery_id)
        if found is None:
            raise NotFound(f"no event delivery {delivery_id!r}")
        if not await outbox.retry_delivery(conn, delivery_id):
            raise EndpointNotEnabled(
                f"endpoint {found['endpoint_id']} is {found['endpoint_status']}; "
                "deliveries are sent to enabled endpoints only"
            )
    log.info("event_delivery.retry_requested", delivery_id=delivery_id)


async def sync_environment_endpoint(
    pool: asyncpg.Pool, url: str | None, secret: str | None
) -> None:
    """The subscriber set by H2S_EVENT_ENDPOINT_URL and _SECRET, as the environment says
    now: written when set, disabled when the variables were removed."""
    async with connection(pool) as conn:
        if url and secret:
            await outbox.upsert_environment_endpoint(conn, ENVIRONMENT_ENDPOINT_ID, url, secret)
        else:
            existing = await outbox.get_endpoint(conn, ENVIRONMENT_ENDPOINT_ID)
            if existing is not None and existing["status"] == "enabled":
                await outbox.end_endpoint(
                    conn,
                    ENVIRONMENT_ENDPOINT_ID,
                    status="disabled",
                    reason="H2S_EVENT_ENDPOINT_URL is no longer set",
                )
