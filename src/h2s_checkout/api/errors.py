"""One table from errors to HTTP answers, each with a stable code."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from h2s_checkout.domain.errors import (
    CatalogChanged,
    CheckoutError,
    CheckoutInProgress,
    DatabaseUnavailable,
    RateLimited,
)
from h2s_checkout.observability.logging import get_logger, log_fields

log = get_logger(__name__)

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def _trace_id() -> str | None:
    value = log_fields().get("checkout_trace_id")
    return str(value) if value else None


def _body(code: str, message: str, trace_id: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error": {"code": code, "message": message, **extra}}
    if trace_id:
        body["checkout_trace_id"] = trace_id
    return body


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """A 4xx answer's JSON body (for layers below the router that answer by themselves)."""
    return _body(code, message, None, **extra)


def checkout_error(_: Request[Any, Any, Any], exc: CheckoutError) -> Response[Any]:
    status, body, headers = checkout_error_answer(exc)
    return Response(body, status_code=status, headers=headers)


def checkout_error_answer(
    exc: CheckoutError,
) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """A checkout error's status, JSON body and headers (also the checkout fast path's)."""
    trace_id = exc.checkout_id or _trace_id()
    headers: dict[str, str] | None = None
    if isinstance(exc, DatabaseUnavailable):
        headers = {"Retry-After": "2"}
    elif isinstance(exc, (CheckoutInProgress, RateLimited, CatalogChanged)):
        headers = {"Retry-After": str(exc.retry_after_s)}
    extra = {k: v for k, v in exc.extra.items() if isinstance(v, (str, int, float, list))}
    body = _body(
        exc.code,
        exc.message,
        trace_id if exc.status >= 500 or isinstance(exc, CheckoutInProgress) else None,
        **extra,
    )
    return exc.status, body, headers


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    code = _HTTP_CODES.get(status, "client_error" if status < 500 else "internal_error")
    if status >= 500:
        log.error("request.http_error", status=status, detail=exc.detail, error=repr(exc))
    extra: dict[str, Any] = {}
    message = exc.detail
    if isinstance(exc, ValidationException):
        fields = exc.extra if isinstance(exc.extra, list) else None
        if fields:
            extra["fields"] = [
                {"field": f.get("key"), "message": f.get("message"), "source": f.get("source")}
                for f in fields
                if isinstance(f, dict)
            ]
        message = "the request body or its parameters are not valid"
    return Response(
        _body(code, message, _trace_id() if status >= 500 else None, **extra),
        status_code=status,
        headers=exc.headers,
    )


def unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return Response(unexpected_error_body(exc), status_code=500)


def unexpected_error_body(exc: Exception) -> dict[str, Any]:
    """A 500's JSON body, the error logged with its traceback (also the fast path's)."""
    log.exception("request.unhandled", error=type(exc).__name__)
    return _body("internal_error", "an internal error occurred", _trace_id())


EXCEPTION_HANDLERS: dict[Any, Any] = {
    CheckoutError: checkout_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
