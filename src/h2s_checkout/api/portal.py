"""The dispatch portal's view of jobs: found by order, or by recipient, status and date.

Seed known issue 2 was a portal that could not find a job right after checkout; here a
job is found by its order id as soon as the checkout's first phase commits.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from h2s_checkout.api.auth import require_scope
from h2s_checkout.api.schemas import ErrorResponse
from h2s_checkout.domain.access import Scope
from h2s_checkout.domain.errors import InvalidRequest
from h2s_checkout.store import portal
from h2s_checkout.store.pool import connection

JOB_STATUSES = ("queued", "dispatchable", "cancelled")
# Cancelled jobs (a cleaned or expired checkout's) are shown only when asked for by name.
DEFAULT_STATUSES = ("queued", "dispatchable")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_QUERY_NAMES = frozenset({"order_id", "recipient_id", "status", "created_since", "limit", "cursor"})
_ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_MAX_CURSOR_CHARS = 200
_UNENCODED_PLUS = re.compile(r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d(?::?\d\d)?)$")


class PortalJob(msgspec.Struct):
    job_id: uuid.UUID
    order_id: str
    order_status: str
    recipient_id: uuid.UUID
    sequence_id: str
    step_id: str
    status: str
    due_at: datetime
    created_at: datetime


class PortalJobs(msgspec.Struct):
    jobs: list[PortalJob]
    next_cursor: str | None


class JobQuery(msgspec.Struct, frozen=True, kw_only=True):
    statuses: tuple[str, ...]
    order_id: str | None = None
    recipient_id: uuid.UUID | None = None
    created_since: datetime | None = None
    after: tuple[datetime, uuid.UUID] | None = None
    limit: int = DEFAULT_LIMIT


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    """The keyset position after a job, opaque to clients."""
    raw = msgspec.json.encode([created_at.isoformat(), str(job_id)])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    bad = InvalidRequest("cursor is not a cursor this endpoint returned")
    if not cursor or len(cursor) > _MAX_CURSOR_CHARS:
        raise bad
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        created, job = msgspec.json.decode(raw, type=tuple[str, str])
        created_at = datetime.fromisoformat(created)
        job_id = uuid.UUID(job)
    except (binascii.Error, msgspec.DecodeError, ValueError, TypeError):
        raise bad from None
    if created_at.tzinfo is None:
        raise bad
    return created_at, job_id


def _parse_datetime(name: str, raw: str) -> datetime:
    """ISO 8601, a date alone meaning its midnight; no offset means UTC."""
    # A "+01:00" offset sent unencoded in a query string arrives as " 01:00".
    text = _UNENCODED_PLUS.sub(r"\1+\2", raw.strip())
    try:
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"{name} must be an ISO 8601 date or time, e.g. 2026-11-26T10:00:00Z"
        ) from None


def parse_job_query(
    *,
    order_id: str | None,
    recipient_id: str | None,
    status: str | None,
    created_since: str | None,
    limit: str | None,
    cursor: str | None,
) -> JobQuery:
    """The portal's query parameters, checked; anything wrong is a 400 invalid_request."""
    if order_id is not None and not _ORDER_ID.match(order_id):
        raise InvalidRequest("order_id is not an order id (ORD-...)")
    recipient: uuid.UUID | None = None
    if recipient_id is not None:
        try:
            recipient = uuid.UUID(recipient_id.strip())
        except ValueError:
            raise InvalidRequest("recipient_id must be a UUID") from None
    if status is not None and status not in JOB_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(JOB_STATUSES)}")
    size = DEFAULT_LIMIT
    if limit is not None:
        if not re.fullmatch(r"\d{1,4}", limit.strip()) or not 1 <= int(limit) <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
        size = int(limit)
    return JobQuery(
        statuses=(status,) if status is not None else DEFAULT_STATUSES,
        # Order ids are upper case, as the timeline's lookup also assumes.
        order_id=order_id.upper() if order_id is not None else None,
        recipient_id=recipient,
        created_since=(
            _parse_datetime("created_since", created_since) if created_since is not None else None
        ),
        after=decode_cursor(cursor) if cursor is not None else None,
        limit=size,
    )


def _query(description: str, **kwargs: Any) -> Any:
    return QueryParameter(description=description, required=False, **kwargs)


class PortalController(Controller):
    path = "/api/portal"
    tags = ["portal"]
    guards = [require_scope(Scope.READ)]
    security = [{"BearerToken": []}]

    @get(
        "/jobs",
        summary="Dispatch jobs with their order's status, newest first",
        description=(
            "Filter by `order_id`, or by `recipient_id`, `status` and `created_since`. "
            "Cancelled jobs are left out unless `status=cancelled` is asked for. Pass "
            "`next_cursor` back as `cursor` for the next page; it is null on the last one."
        ),
        responses={
            400: ResponseSpec(ErrorResponse, description="A bad parameter (invalid_request)"),
            401: ResponseSpec(ErrorResponse, description="No, unknown, revoked or expired key"),
            403: ResponseSpec(ErrorResponse, description="The key lacks the read scope"),
        },
    )
    async def jobs(
        self,
        request: Request[Any, Any, Any],
        db_pool: NamedDependency[asyncpg.Pool],
        order_id: Annotated[str | None, _query("The order's id (ORD-...)")] = None,
        recipient_id: Annotated[str | None, _query("The recipient's UUID", format="uuid")] = None,
        status: Annotated[
            str | None,
            _query("queued, dispatchable or cancelled (default: all but cancelled)"),
        ] = None,
        created_since: Annotated[
            str | None, _query("ISO 8601; jobs created at or after it", format="date-time")
        ] = None,
        limit: Annotated[str | None, _query(f"1 to {MAX_LIMIT}, default {DEFAULT_LIMIT}")] = None,
        cursor: Annotated[str | None, _query("next_cursor from the previous page")] = None,
    ) -> PortalJobs:
        unknown = sorted(set(request.query_params) - _QUERY_NAMES)
        if unknown:
            raise InvalidRequest(f"unknown query parameter: {', '.join(unknown)}")
        repeated = sorted(k for k in _QUERY_NAMES if len(request.query_params.getall(k, [])) > 1)
        if repeated:
            raise InvalidRequest(f"query parameter given more than once: {', '.join(repeated)}")
        query = parse_job_query(
            order_id=order_id,
            recipient_id=recipient_id,
            status=status,
            created_since=created_since,
            limit=limit,
            cursor=cursor,
        )
        async with connection(db_pool) as conn:
            rows = await portal.list_jobs(
                conn,
                statuses=query.statuses,
                order_id=query.order_id,
                recipient_id=query.recipient_id,
                created_since=query.created_since,
                after=query.after,
                limit=query.limit + 1,  # one more tells whether another page follows
            )
        page = rows[: query.limit]
        more = len(rows) > query.limit
        return PortalJobs(
            jobs=[
                PortalJob(
                    job_id=row["job_id"],
                    order_id=row["order_id"],
                    order_status=row["order_status"],
                    recipient_id=row["recipient_id"],
                    sequence_id=row["sequence_id"],
                    step_id=row["step_id"],
                    status=row["status"],
                    due_at=row["due_at"],
                    created_at=row["created_at"],
                )
                for row in page
            ],
            next_cursor=(
                encode_cursor(page[-1]["created_at"], page[-1]["job_id"]) if more else None
            ),
        )
