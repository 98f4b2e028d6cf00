"""Public storefront endpoints: the catalog and POST /api/checkout."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.openapi.spec import Example
from litestar.params import Body, HeaderParameter

from h2s_checkout.api.auth import CheckoutCallerGuard, caller_of
from h2s_checkout.api.catalog import ETAG_HEADER, NOT_MODIFIED, IfNoneMatch, not_modified
from h2s_checkout.api.client_address import client_address
from h2s_checkout.api.openapi import error_responses
from h2s_checkout.api.schemas import (
    Catalog,
    CatalogEntry,
    CheckoutRequest,
    CheckoutResponse,
)
from h2s_checkout.domain.access import Principal
from h2s_checkout.domain.errors import CheckoutError
from h2s_checkout.flows.begin_checkout import (
    CheckoutCommand,
    CheckoutFlow,
    CheckoutResult,
    Customer,
)
from h2s_checkout.flows.catalog_cache import CatalogCache
from h2s_checkout.observability.metrics import CHECKOUT_REQUESTS

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        min_length=1,
        max_length=255,
        description="Optional client key; the same key with the same body replays the answer.",
    ),
]

_ERRORS = error_responses(400, 401, 403, 409, 413, 422, 429, 502, 503)
# The two answers of almost every request, their counters looked up once.
_CREATED, _REPLAYED = CHECKOUT_REQUESTS.labels("created"), CHECKOUT_REQUESTS.labels("replayed")

# The README's request: Swagger shows it, and schemathesis sends it first.
CheckoutBody = Annotated[
    CheckoutRequest,
    Body(
        media_type=RequestEncodingType.JSON,
        examples=[
            Example(
                summary="One TV mounted in Austin",
                value={
                    "customer": {
                        "email": "ana@example.com",
                        "name": "Ana",
                        "phone": "+15555550100",
                        "address": {
                            "line1": "1 Main St",
                            "city": "Austin",
                            "state": "TX",
                            "postal_code": "78701",
                            "country": "US",
                        },
                    },
                    "items": [{"sku": "tv-mount", "quantity": 1}],
                },
            )
        ],
    ),
]


def answer_headers(result: CheckoutResult) -> dict[str, str]:
    """The headers of a checkout's answer (the route's and the fast path's)."""
    headers = {"Location": f"/api/checkouts/{result.checkout_id}"}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return headers


async def begin_counted(flow: CheckoutFlow, command: CheckoutCommand) -> CheckoutResult:
    """``flow.begin``, its answer or its error counted in h2s_checkout_requests_total (the
    route's and the fast path's one way in)."""
    try:
        result = await flow.begin(command)
    except CheckoutError as exc:
        CHECKOUT_REQUESTS.labels(exc.code).inc()
        raise
    (_REPLAYED if result.replayed else _CREATED).inc()
    return result


def to_command(
    data: CheckoutRequest,
    idempotency_key: str | None,
    client_address: str | None = None,
    caller: Principal | None = None,
) -> CheckoutCommand:
    c = data.customer
    body = msgspec.to_builtins(data)  # once: the address below is the body's own
    return CheckoutCommand(
        customer=Customer(
            email=c.email,
            name=c.name,
            phone=c.phone,
            address=body["customer"]["address"],
        ),
        items=tuple((item.sku, item.quantity) for item in data.items),
        request_body=body,
        idempotency_key=idempotency_key,
        client_address=client_address,
        caller=caller,
    )


class CheckoutController(Controller):
    path = "/api"
    tags = ["checkout"]

    @get(
        "/catalog",
        summary="Services for sale, with server-side prices",
        response_headers=ETAG_HEADER,
        description=(
            "Answers `ETag`; with `If-None-Match` naming it, 304 and no body while the "
            "catalog is the same."
        ),
        responses={304: NOT_MODIFIED, **error_responses(400, 503)},
    )
    async def catalog(
        self, catalog_cache: NamedDependency[CatalogCache], if_none_match: IfNoneMatch = None
    ) -> Response[Catalog]:
        snapshot = await catalog_cache.snapshot()
        if not_modified(if_none_match, snapshot.etag):
            return Response(b"", status_code=304, headers={"ETag": snapshot.etag})  # type: ignore[arg-type]
        body = Catalog(
            items=[
                CatalogEntry(
                    sku=i.sku,
                    name=i.name,
                    description=i.description,
                    unit_amount_cents=i.unit_amount_cents,
                    currency=i.currency,
                    max_quantity=i.max_quantity,
                )
                for i in snapshot.items.values()
            ]
        )
        return Response(body, headers={"ETag": snapshot.etag})

    @post(
        "/checkout",
        summary="Create order, dispatch job and Stripe Checkout Session, all or nothing",
        status_code=201,
        responses=_ERRORS,
        description=(
            "Public. A storefront's own server may send `Authorization: Bearer <key>` with a "
            "key holding the `checkout` scope: its new checkouts are then limited per key "
            "and per email instead of per client address. A key that is not valid is 401, "
            "one without the scope 403: never quietly anonymous."
        ),
        guards=[CheckoutCallerGuard()],
        security=[{}, {"BearerToken": []}],
    )
    async def create_checkout(
        self,
        request: Request[Any, Any, Any],
        data: CheckoutBody,
        checkout_flow: NamedDependency[CheckoutFlow],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CheckoutResponse]:
        command = to_command(data, idempotency_key, client_address(request), caller_of(request))
        result = await begin_counted(checkout_flow, command)
        # The answer's JSON as the flow has it (a replay's as stored): encoded once. The
        # return annotation gives OpenAPI the body's shape.
        return Response(
            result.json(),  # type: ignore[arg-type]
            status_code=result.status,
            headers=answer_headers(result),
            media_type=MediaType.JSON,
        )
