"""OpenAPI that says what the server does: every status given, bodies closed as they are."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

# Litestar's own schema plugin for msgspec Structs, not exported publicly (litestar<3).
from litestar._openapi.schema_generation.plugins import StructSchemaPlugin
from litestar.openapi.datastructures import ResponseSpec

from h2s_checkout.api.schemas import ErrorResponse

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Schema
    from litestar.typing import FieldDefinition

_MEANINGS = {
    400: "Malformed request (invalid_request) or bad webhook signature (invalid_signature)",
    401: "No, unknown, revoked or expired API key (unauthorized)",
    403: "The API key lacks the scope this operation needs (forbidden)",
    404: "No such checkout, order or catalog item (not_found)",
    409: "A checkout with this key is in progress (checkout_in_progress, retry after "
    "Retry-After), the order cannot be cancelled in its state (not_cancellable), the catalog "
    "changed twice while the checkout was priced (catalog_changed), or a catalog item has "
    "this sku already (sku_taken)",
    412: "If-Match is not the current ETag: it was changed since (precondition_failed)",
    413: "Body too large (payload_too_large)",
    422: "Unknown SKU, quantity out of range, Idempotency-Key reused with another body, the "
    "service address outside the service area (outside_service_area), a cart over one "
    "payment's bound (amount_too_large), an unknown currency (unknown_currency), or a price "
    "below the currency's smallest charge (price_below_minimum)",
    428: "If-Match is required: send the ETag of the version you change (precondition_required)",
    429: "Over a limit (rate_limited); nothing was written; retry after Retry-After",
    502: "The payment provider failed; the checkout was cleaned up",
    503: "Database or configuration unavailable; retry after Retry-After",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(ErrorResponse, description=_MEANINGS[status]) for status in statuses
    }


class ClosedStructSchemaPlugin(StructSchemaPlugin):
    """A Struct with ``forbid_unknown_fields`` gets ``additionalProperties: false``.

    Litestar's plugin leaves it out, so the schema promised that a body with an extra
    field is accepted while the server answers it 400. Registered on the app, it comes
    before Litestar's own plugins.
    """

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema
