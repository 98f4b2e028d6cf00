"""Documented error answers, so the OpenAPI schema lists every status an operation gives."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec

from h2s_checkout.api.schemas import ErrorResponse

_MEANINGS = {
    400: "Malformed request (invalid_request) or bad webhook signature (invalid_signature)",
    401: "Missing or wrong admin bearer token (unauthorized)",
    404: "No such checkout or order (not_found)",
    409: "A checkout with this key is in progress (checkout_in_progress, retry after "
    "Retry-After), or the order cannot be cancelled in its state (not_cancellable)",
    413: "Body too large (payload_too_large)",
    422: "Unknown SKU, quantity out of range, or Idempotency-Key reused with another body",
    502: "The payment provider failed; the checkout was cleaned up",
    503: "Database or configuration unavailable; retry after Retry-After",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(ErrorResponse, description=_MEANINGS[status]) for status in statuses
    }
