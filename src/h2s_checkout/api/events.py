"""Subscribers to outbound events and their deliveries (admin token; docs/events.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, Response, delete, get, post, route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from h2s_checkout.api.auth import require_scope
from h2s_checkout.api.schemas import (
    ErrorResponse,
    EventDeliveries,
    EventEndpoint,
    EventEndpointIn,
    EventEndpoints,
    RetryAccepted,
)
from h2s_checkout.domain.access import Scope
from h2s_checkout.flows import event_endpoints

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def _errors(**meanings: str) -> dict[int, ResponseSpec]:
    return {
        int(status[1:]): ResponseSpec(ErrorResponse, description=meaning)
        for status, meaning in meanings.items()
    }


_UNAUTHORIZED = "Missing or wrong admin bearer token (unauthorized)"
_NO_ENDPOINT = "No such event endpoint (not_found)"
_UNAVAILABLE = "Database unavailable; retry after Retry-After"


class EventEndpointController(Controller):
    path = "/api"
    tags = ["events"]
    guards = [require_scope(Scope.OPERATE)]
    security = [{"BearerToken": []}]

    # This path's OPTIONS answer. Litestar (2.25) registers a controller's handlers one by
    # one in the order of their names, and the OPTIONS handler it makes for the first of
    # a path (POST) keeps answering "Allow: OPTIONS, POST" after GET joins it; a handler
    # of ours whose name sorts first takes its place.
    @route("/event-endpoints", http_method=[HttpMethod.OPTIONS], include_in_schema=False)
    async def allow_event_endpoints(self) -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @post(
        "/event-endpoints",
        summary="Subscribe a URL to order events",
        description=(
            "Every change of an order is POSTed to each enabled endpoint, signed by the "
            "Standard Webhooks specification with the `secret` in this answer (shown only "
            "here and on rotation). A URL that is not http(s), carries credentials, or points "
            "at a link-local or metadata address (in any IPv4 form: `2852039166` is "
            "169.254.169.254), or at this service or its payment provider, is refused; "
            "private and loopback addresses only with H2S_EVENTS_ALLOW_PRIVATE=true."
        ),
        status_code=201,
        responses=_errors(
            s400="Bad URL, event type or description (invalid_request)",
            s401=_UNAUTHORIZED,
            s503=_UNAVAILABLE,
        ),
    )
    async def create_endpoint(
        self,
        data: JSONBody[EventEndpointIn],
        request: Request[Any, Any, Any],
        db_pool: NamedDependency[asyncpg.Pool],
    ) -> EventEndpoint:
        view = await event_endpoints.register(
            db_pool,
            url=data.url,
            event_types=data.event_types,
            description=data.description,
            allow_private=request.app.state.settings.events_allow_private,
            reserved=request.app.state.reserved_targets,
        )
        return msgspec.convert(view, EventEndpoint)

    @get(
        "/event-endpoints",
        summary="Event endpoints (without their secrets)",
        responses=_errors(s401=_UNAUTHORIZED, s503=_UNAVAILABLE),
    )
    async def list_endpoints(self, db_pool: NamedDependency[asyncpg.Pool]) -> EventEndpoints:
        views = await event_endpoints.list_all(db_pool)
        return EventEndpoints(endpoints=[msgspec.convert(v, EventEndpoint) for v in views])

    @delete(
        "/event-endpoints/{endpoint_id:str}",
        summary="Stop sending to an endpoint; its pending deliveries are cancelled",
        status_code=204,
        responses=_errors(s401=_UNAUTHORIZED, s404=_NO_ENDPOINT, s503=_UNAVAILABLE),
    )
    async def delete_endpoint(
        self, endpoint_id: FromPath[str], db_pool: NamedDependency[asyncpg.Pool]
    ) -> None:
        await event_endpoints.delete(db_pool, endpoint_id)

    @post(
        "/event-endpoints/{endpoint_id:str}/rotate-secret",
        summary="A new signing secret; the old one also signs for 24 h",
        status_code=200,
        responses=_errors(s401=_UNAUTHORIZED, s404=_NO_ENDPOINT, s503=_UNAVAILABLE),
    )
    async def rotate_secret(
        self,
        endpoint_id: FromPath[str],
        request: Request[Any, Any, Any],
        db_pool: NamedDependency[asyncpg.Pool],
    ) -> EventEndpoint:
        view = await event_endpoints.rotate_secret(
            db_pool, endpoint_id, clock=request.app.state.event_deliverer.clock
        )
        return msgspec.convert(view, EventEndpoint)

    @get(
        "/event-endpoints/{endpoint_id:str}/deliveries",
        summary="An endpoint's deliveries, newest first, with every attempt",
        responses=_errors(
            s400="Bad status or limit (invalid_request)",
            s401=_UNAUTHORIZED,
            s404=_NO_ENDPOINT,
            s503=_UNAVAILABLE,
        ),
    )
    async def deliveries(
        self,
        endpoint_id: FromPath[str],
        db_pool: NamedDependency[asyncpg.Pool],
        status: Annotated[
            Literal["pending", "delivered", "failed", "cancelled"] | None,
            QueryParameter(required=False, description="pending, delivered, failed or cancelled"),
        ] = None,
        limit: Annotated[
            int,
            QueryParameter(
                required=False, ge=1, le=MAX_LIMIT, description=f"default {DEFAULT_LIMIT}"
            ),
        ] = DEFAULT_LIMIT,
    ) -> EventDeliveries:
        views = await event_endpoints.deliveries(db_pool, endpoint_id, status=status, limit=limit)
        return msgspec.convert({"deliveries": views}, EventDeliveries)

    @post(
        "/event-deliveries/{delivery_id:str}/retry",
        summary="Send a delivery again now, with a fresh retry schedule and the same webhook-id",
        status_code=202,
        responses=_errors(
            s401=_UNAUTHORIZED,
            s404="No such delivery (not_found)",
            s409="Its endpoint is disabled or deleted (endpoint_not_enabled)",
            s503=_UNAVAILABLE,
        ),
    )
    async def retry_delivery(
        self, delivery_id: FromPath[str], db_pool: NamedDependency[asyncpg.Pool]
    ) -> RetryAccepted:
        await event_endpoints.retry(db_pool, delivery_id)
        return RetryAccepted(ok=True, id=delivery_id, status="pending")
