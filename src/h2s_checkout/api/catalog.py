"""The shop's catalog and service area for its staff (catalog scope), and the service
area for storefronts (public). Changes need If-Match with the ETag they change."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, patch, post, put
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from msgspec import Meta

from h2s_checkout.api.auth import actor_of, require_scope
from h2s_checkout.api.openapi import error_responses
from h2s_checkout.api.schemas import Country, Sku
from h2s_checkout.domain.access import Scope
from h2s_checkout.domain.cart import CatalogItem
from h2s_checkout.domain.catalog import MAX_UNIT_AMOUNT_CENTS, ItemChange, fields_of, item_etag
from h2s_checkout.domain.errors import InvalidRequest
from h2s_checkout.flows.catalog import AreaView, CatalogAdmin, Change

_TEXT = r"^[^\x00-\x1f\x7f]*$"
ItemName = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*\S")]
Description = Annotated[str, Meta(max_length=2000, pattern=_TEXT)]
UnitAmount = Annotated[
    int,
    Meta(ge=1, le=MAX_UNIT_AMOUNT_CENTS, description="The price of one, in cents (minor units)"),
]
Currency = Annotated[
    str, Meta(pattern=r"^[a-z]{3}$", description="ISO 4217, lower case; one Stripe takes")
]
MaxQuantity = Annotated[int, Meta(ge=1, le=100, description="Most of it one booking may hold")]
PostalPrefix = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=12,
        pattern=r"^[A-Za-z0-9 -]*[A-Za-z0-9][A-Za-z0-9 -]*$",
        description="A postal code's start, or a whole code (case, spaces and - ignored)",
    ),
]

IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        required=False,
        max_length=200,
        description="The ETag of the version this changes (required: 428 without, 412 stale)",
    ),
]
IfNoneMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-None-Match",
        required=False,
        max_length=500,
        description="The ETag you hold: 304 while it is current",
    ),
]

NOT_MODIFIED = ResponseSpec(
    None, description="Not modified: the ETag given in If-None-Match is still current"
)
ETAG_HEADER = [
    ResponseHeader(
        name="ETag",
        description="The version answered: send it as If-Match to change it, or as "
        "If-None-Match to be told 304 while it is current",
        documentation_only=True,
    )
]
_CHANGE_ERRORS = error_responses(400, 401, 403, 404, 412, 413, 422, 428, 503)


class NewItem(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sku: Sku
    name: ItemName
    unit_amount_cents: UnitAmount
    description: Description = ""
    currency: Currency = "usd"
    max_quantity: MaxQuantity = 10


class ItemPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Any of the fields but sku; those left out stay as they are."""

    name: ItemName | None = None
    description: Description | None = None
    unit_amount_cents: UnitAmount | None = None
    currency: Currency | None = None
    max_quantity: MaxQuantity | None = None
    active: bool | None = None


class Item(msgspec.Struct):
    sku: str
    name: str
    description: str
    unit_amount_cents: int
    currency: str
    max_quantity: int
    active: bool
    version: int
    etag: str


class Items(msgspec.Struct):
    items: list[Item]


class ChangeEntry(msgspec.Struct):
    version: int
    action: str
    actor: str
    at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any]


class History(msgspec.Struct):
    changes: list[ChangeEntry]


class Area(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    country: Country
    postal_code_prefixes: Annotated[list[PostalPrefix], Meta(min_length=1, max_length=1000)]


class AreaPut(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    areas: Annotated[list[Area], Meta(max_length=50, description="None: everywhere")]


class ServiceAreaOut(msgspec.Struct):
    areas: list[Area]
    everywhere: bool
    version: int
    etag: str
    updated_at: datetime | None
    updated_by: str | None


def _item(item: CatalogItem) -> Item:
    return Item(**fields_of(item), etag=item_etag(item))


def _item_answer(item: CatalogItem, status: int = 200) -> Response[Item]:
    return Response(_item(item), status_code=status, headers={"ETag": item_etag(item)})


def _history(changes: list[Change]) -> History:
    return History(changes=[msgspec.convert(c, ChangeEntry, from_attributes=True) for c in changes])


def _area(view: AreaView) -> ServiceAreaOut:
    area = view.area
    return ServiceAreaOut(
        areas=[Area(country=c, postal_code_prefixes=list(p)) for c, p in area.areas],
        everywhere=not area.areas,
        version=area.version,
        etag=area.etag,
        updated_at=view.updated_at,
        updated_by=view.updated_by,
    )


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison, a list of tags or *."""
    if not if_none_match:
        return False
    given = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in given or etag in given


class CatalogItemController(Controller):
    path = "/api/catalog/items"
    tags = ["catalog"]
    guards = [require_scope(Scope.CATALOG)]
    security = [{"BearerToken": []}]

    @post(
        "/",
        summary="Add a service to the catalog; 201 with the item and its ETag",
        response_headers=ETAG_HEADER,
        status_code=201,
        responses=error_responses(400, 401, 403, 409, 413, 422, 503),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[NewItem],
        catalog_admin: NamedDependency[CatalogAdmin],
    ) -> Response[Item]:
        item = await catalog_admin.create_item(
            CatalogItem(
                sku=data.sku,
                name=data.name,
                description=data.description,
                unit_amount_cents=data.unit_amount_cents,
                currency=data.currency,
                max_quantity=data.max_quantity,
            ),
            actor=actor_of(request),
        )
        return _item_answer(item, 201)

    @get(
        "/",
        summary="Every catalog item, deactivated ones with include_inactive=true",
        responses=error_responses(400, 401, 403, 503),
    )
    async def list_items(
        self,
        catalog_admin: NamedDependency[CatalogAdmin],
        include_inactive: Annotated[bool, QueryParameter(required=False)] = False,
    ) -> Items:
        found = await catalog_admin.list_items(include_inactive=include_inactive)
        return Items(items=[_item(i) for i in found])

    @get(
        "/{sku:str}",
        summary="One catalog item, active or not, with its ETag",
        response_headers=ETAG_HEADER,
        responses=error_responses(401, 403, 404, 503),
    )
    async def get_item(
        self, sku: FromPath[str], catalog_admin: NamedDependency[CatalogAdmin]
    ) -> Response[Item]:
        return _item_answer(await catalog_admin.get_item(sku))

    @patch(
        "/{sku:str}",
        summary="Change an item (price, fields, active); If-Match with its current ETag",
        response_headers=ETAG_HEADER,
        description=(
            "Any of the fields but `sku`, plus `active` (no delete: an item is deactivated "
            "and can come back). `If-Match` must be the item's current `ETag`: a stale one "
            "is 412 `precondition_failed` (someone changed it since: nothing is "
            "overwritten), none 428 `precondition_required`. The next checkout on every "
            "replica is priced at the new price."
        ),
        responses=_CHANGE_ERRORS,
    )
    async def change(
        self,
        request: Request[Any, Any, Any],
        sku: FromPath[str],
        data: JSONBody[ItemPatch],
        catalog_admin: NamedDependency[CatalogAdmin],
        if_match: IfMatch = None,
    ) -> Response[Item]:
        if data.active is not None and not isinstance(
            msgspec.json.decode(await request.body()).get("active"), bool
        ):
            # The decoder takes 0 and 1 for booleans; the schema says true or false.
            raise InvalidRequest("active must be true or false")
        item = await catalog_admin.change_item(
            sku,
            ItemChange(
                name=data.name,
                description=data.description,
                unit_amount_cents=data.unit_amount_cents,
                currency=data.currency,
                max_quantity=data.max_quantity,
                active=data.active,
            ),
            if_match=if_match,
            actor=actor_of(request),
        )
        return _item_answer(item)

    @get(
        "/{sku:str}/history",
        summary="Every change of an item, newest first: who, when, before and after",
        responses=error_responses(401, 403, 404, 503),
    )
    async def history(
        self, sku: FromPath[str], catalog_admin: NamedDependency[CatalogAdmin]
    ) -> History:
        return _history(await catalog_admin.item_history(sku))


class ServiceAreaController(Controller):
    path = "/api/service-area"
    tags = ["catalog"]

    @get(
        "/",
        summary="The postal codes the shop serves, per country (none: everywhere)",
        response_headers=ETAG_HEADER,
        responses={304: NOT_MODIFIED, **error_responses(400, 503)},
    )
    async def show(
        self, catalog_admin: NamedDependency[CatalogAdmin], if_none_match: IfNoneMatch = None
    ) -> Response[ServiceAreaOut]:
        view = await catalog_admin.service_area()
        if not_modified(if_none_match, view.area.etag):
            return Response(b"", status_code=304, headers={"ETag": view.area.etag})  # type: ignore[arg-type]
        return Response(_area(view), headers={"ETag": view.area.etag})

    @put(
        "/",
        summary="Set the service area; If-Match with its current ETag",
        response_headers=ETAG_HEADER,
        description=(
            "`areas`: the postal code prefixes served, per country (a prefix may be a whole "
            "code); an empty list is everywhere. A checkout whose service address is "
            "outside is 422 `outside_service_area`, nothing written. `If-Match` as for an "
            "item: 412 stale, 428 missing."
        ),
        guards=[require_scope(Scope.CATALOG)],
        security=[{"BearerToken": []}],
        responses=error_responses(400, 401, 403, 412, 413, 428, 503),
    )
    async def set_area(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[AreaPut],
        catalog_admin: NamedDependency[CatalogAdmin],
        if_match: IfMatch = None,
    ) -> Response[ServiceAreaOut]:
        view = await catalog_admin.set_service_area(
            [msgspec.to_builtins(a) for a in data.areas],
            if_match=if_match,
            actor=actor_of(request),
        )
        return Response(_area(view), headers={"ETag": view.area.etag})

    @get(
        "/history",
        summary="Every change of the service area, newest first",
        guards=[require_scope(Scope.CATALOG)],
        security=[{"BearerToken": []}],
        responses=error_responses(401, 403, 503),
    )
    async def history(self, catalog_admin: NamedDependency[CatalogAdmin]) -> History:
        return _history(await catalog_admin.area_history())
