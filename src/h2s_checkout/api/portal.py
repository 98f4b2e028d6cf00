"""The dispatch portal's view of jobs: found by order, or by recipient, status and date.

Seed known issue 2 was a portal that could not find a job right after checkout; here a
job is found by its order id as soon as the checkout's first phase commits. A job carries
where the technician goes and what to do there, so a technician's app needs no second call.

Each query parameter's schema says exactly what the server accepts: Litestar checks
`status` and `limit` against their declared types, the rest are checked here against the
very patterns and formats their schemas show. Anything else is a 400 invalid_request.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import QueryParameter

from h2s_checkout.api.auth import require_scope
from h2s_checkout.api.openapi import error_responses
from h2s_checkout.domain.access import Scope
from h2s_checkout.domain.errors import InvalidRequest
from h2s_checkout.domain.keys import ORDER_ID_PATTERN
from h2s_checkout.store import portal
from h2s_checkout.store.pool import connection

JOB_STATUSES = ("queued", "dispatchable", "completed", "cancelled")
# Cancelled jobs (a cleaned or expired checkout's) are shown only when asked for by name.
DEFAULT_STATUSES = ("queued", "dispatchable")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_QUERY_NAMES = frozenset({"order_id", "recipient_id", "status", "created_since", "limit", "cursor"})
UUID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
# The keyset position after a job: its created_at in microseconds since 1970 (14 hex
# digits reach the year 4253) and its job id. Every string of this shape is a position,
# so the pattern alone says which cursors are accepted.
CURSOR_PATTERN = r"^[0-9a-f]{46}$"
_CURSOR_TIME_DIGITS = 14
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# RFC 3339, as JSON Schema's date and date-time formats: a date alone, or a time with its
# offset ("T" and "Z" in either case). ASCII digits only: \d would take any script's.
_DATE_OR_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2}))?"
)
# A "+01:00" offset sent unencoded in a query string arrives as " 01:00".
_UNENCODED_PLUS = re.compile(r"(:[0-9]{2}(?:\.[0-9]+)?) ([0-9]{2}:[0-9]{2})$")


class ServiceAddress(msgspec.Struct):
    """Where the technician goes: the address the customer booked the service at."""

    line1: str
    city: str
    state: str
    postal_code: str
    country: str
    line2: str | None = None


class JobCustomer(msgspec.Struct):
    """Who the technician meets, as given on this booking."""

    name: str
    phone: str | None = None


class JobService(msgspec.Struct):
    """One service of the order, with how many of it to do."""

    sku: str
    name: str
    quantity: int


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
    customer: JobCustomer
    # authorization_expired: the card's hold lapsed before the job was done; staff act
    # before a technician goes.
    payment_flag: str | None
    service_address: ServiceAddress
    services: list[JobService]


class PortalJobs(msgspec.Struct):
    jobs: list[PortalJob]
    next_cursor: str | None


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    """The keyset position after a job, opaque to clients."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros:0{_CURSOR_TIME_DIGITS}x}{job_id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The keyset position a cursor names; any string of CURSOR_PATTERN's shape names one."""
    text = matching("cursor", cursor, CURSOR_PATTERN, "a next_cursor this endpoint returned")
    micros = int(text[:_CURSOR_TIME_DIGITS], 16)
    return _EPOCH + timedelta(microseconds=micros), uuid.UUID(hex=text[_CURSOR_TIME_DIGITS:])


def parse_created_since(raw: str) -> datetime:
    """A date (its midnight, UTC) or a date-time with its offset, as UTC; 400 otherwise.

    A time so near the calendar's ends that UTC cannot hold it (0001-01-01T00:00:00+14:00)
    is still a valid time: it is read as the earliest or latest time there is.
    """
    text = _UNENCODED_PLUS.sub(r"\1+\2", raw)
    if not _DATE_OR_DATE_TIME.fullmatch(text):
        raise InvalidRequest(
            "created_since must be a date (2026-11-26) or a date-time with its offset "
            "(2026-11-26T10:00:00Z)"
        )
    try:
        value = datetime.fromisoformat(text.upper())
    except ValueError:
        raise InvalidRequest(f"created_since is not a date that exists: {raw!r}") from None
    if value.tzinfo is None:  # a date alone
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        east = value.utcoffset() or timedelta(0)
        edge = datetime.min if east > timedelta(0) else datetime.max
        return edge.replace(tzinfo=UTC)


def matching(name: str, value: str, pattern: str, shape: str) -> str:
    """``value`` if the whole of it matches ``pattern``, else a 400 naming the parameter.

    fullmatch, not msgspec's search: the schema's ``$`` means the end of the string (as in
    ECMA-262, which JSON Schema follows); Python's would also let a final newline through.
    """
    if not re.fullmatch(pattern, value):
        raise InvalidRequest(f"{name} must be {shape}")
    return value


def _optional(description: str, **schema: Any) -> Any:
    """An optional query parameter: absent or a string of its own shape, never null, so its
    schema carries no null branch (a fuzzer would send null as an empty value)."""
    return QueryParameter(
        description=description,
        required=False,
        schema_extra={"one_of": None, "type": OpenAPIType.STRING, **schema},
    )


def job_from_row(row: asyncpg.Record) -> PortalJob:
    return PortalJob(
        job_id=row["job_id"],
        order_id=row["order_id"],
        order_status=row["order_status"],
        recipient_id=row["recipient_id"],
        sequence_id=row["sequence_id"],
        step_id=row["step_id"],
        status=row["status"],
        payment_flag=row["payment_flag"],
        due_at=row["due_at"],
        created_at=row["created_at"],
        customer=JobCustomer(name=row["customer_name"], phone=row["customer_phone"]),
        service_address=msgspec.convert(row["service_address"], ServiceAddress),
        services=msgspec.convert(row["services"], list[JobService]),
    )


class PortalController(Controller):
    path = "/api/portal"
    tags = ["portal"]
    guards = [require_scope(Scope.READ)]
    security = [{"BearerToken": []}]

    @get(
        "/jobs",
        summary="Dispatch jobs with their order's status, address and services, newest first",
        description=(
            "Filter by `order_id`, or by `recipient_id`, `status` and `created_since`. "
            "Cancelled jobs are left out unless `status=cancelled` is asked for. Pass "
            "`next_cursor` back as `cursor` for the next page; it is null on the last one. "
            "An unknown or repeated parameter is a 400."
        ),
        responses=error_responses(400, 401, 403, 503),
    )
    async def jobs(
        self,
        request: Request[Any, Any, Any],
        db_pool: NamedDependency[asyncpg.Pool],
        order_id: Annotated[
            str | None,
            _optional("The order's id (ORD- and 16 hex digits)", pattern=ORDER_ID_PATTERN),
        ] = None,
        recipient_id: Annotated[
            str | None,
            _optional("The recipient's UUID", format="uuid", pattern=UUID_PATTERN),
        ] = None,
        # A plain string checked here: Litestar would read "null" as an absent Literal.
        status: Annotated[
            str | None,
            _optional(
                "Only jobs in this status (default: queued and dispatchable)",
                enum=list(JOB_STATUSES),
            ),
        ] = None,
        created_since: Annotated[
            str | None,
            _optional(
                "Jobs created at or after it: a date (its midnight, UTC) or a date-time "
                "with its offset (RFC 3339)",
                any_of=[
                    Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE),
                    Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
                ],
            ),
        ] = None,
        limit: Annotated[
            int,
            QueryParameter(description="Jobs per page", required=False, ge=1, le=MAX_LIMIT),
        ] = DEFAULT_LIMIT,
        cursor: Annotated[
            str | None,
            _optional("`next_cursor` from the previous page", pattern=CURSOR_PATTERN),
        ] = None,
    ) -> PortalJobs:
        unknown = sorted(set(request.query_params) - _QUERY_NAMES)
        if unknown:
            raise InvalidRequest(f"unknown query parameter: {', '.join(unknown)}")
        repeated = sorted(k for k in _QUERY_NAMES if len(request.query_params.getall(k, [])) > 1)
        if repeated:
            raise InvalidRequest(f"query parameter given more than once: {', '.join(repeated)}")
        if status is not None and status not in JOB_STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(JOB_STATUSES)}")
        if order_id is not None:
            # Order ids are upper case, as the timeline's lookup also assumes.
            order_id = matching("order_id", order_id, ORDER_ID_PATTERN, "ORD- and 16 hex digits")
        recipient = (
            uuid.UUID(matching("recipient_id", recipient_id, UUID_PATTERN, "a UUID"))
            if recipient_id is not None
            else None
        )
        since = parse_created_since(created_since) if created_since is not None else None
        after = decode_cursor(cursor) if cursor is not None else None
        async with connection(db_pool) as conn:
            rows = await portal.list_jobs(
                conn,
                statuses=(status,) if status is not None else DEFAULT_STATUSES,
                order_id=order_id.upper() if order_id is not None else None,
                recipient_id=recipient,
                created_since=since,
                after=after,
                limit=limit + 1,  # one more tells whether another page follows
            )
        page = rows[:limit]
        more = len(rows) > limit
        return PortalJobs(
            jobs=[job_from_row(row) for row in page],
            next_cursor=(
                encode_cursor(page[-1]["created_at"], page[-1]["job_id"]) if more else None
            ),
        )
