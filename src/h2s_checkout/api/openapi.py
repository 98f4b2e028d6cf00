"""Documented error answers, so the OpenAPI schema lists every status an operation gives."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec

from h2s_checkout.api.schemas import ErrorResponse

_MEANINGS = {
    400: "Malformed request (invalid_request) or bad webhook signature (invalid_signature)",
    401: "No, unknown, revoked or expired API key (unauthorized)",
    403: "The API key lacks the scope this operation needs (forbidden)",
    404: "No such checkout or order (not_found)",
    409: "A checkout with this key is in progress; retry after Retry-After",
    413: "Body too large (payload_too_large)",
    422: "Unknown SKU, quantity out of range, or Idempotency-Key reused with another body",
    429: "Over a limit (rate_limited); nothing was written; retry after Retry-After",
    502: "The payment provider failed; the checkout was cleaned up",
    503: "Database or configuration unavailable; retry after Retry-After",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(ErrorResponse, description=_MEANINGS[status]) for status in statuses
    }
