"""Stripe error responses: the exception handlers raise and its JSON body."""

from typing import Any

_DOC_BASE = "https://stripe.com/docs/error-codes/"


class StripeError(Exception):
    """An error answered to the client as Stripe's `{"error": {...}}` JSON.

    `stored` says whether the idempotency layer keeps this result for replay:
    Stripe saves results only once an endpoint began executing, so parameter
    validation failures are not stored but business-rule failures are.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        stored: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.stored = stored
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = _DOC_BASE + self.code.replace("_", "-")
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """400 invalid_request_error for a parameter that failed validation."""
    return StripeError(400, message, param=param, code=code)


def missing_param(param: str) -> StripeError:
    return invalid(f"Missing required param: {param}.", param, "parameter_missing")


def unknown_param(param: str) -> StripeError:
    return invalid(f"Received unknown parameter: {param}", param, "parameter_unknown")


def resource_missing(kind: str, ident: str, param: str) -> StripeError:
    return StripeError(404, f"No such {kind}: '{ident}'", code="resource_missing", param=param)


def api_error(message: str | None = None) -> StripeError:
    return StripeError(
        500,
        message
        or "Sorry, something went wrong. We've already been notified of the "
        "problem, but if you need any help, you can reach us at "
        "support.stripe.com/contact.",
        type="api_error",
    )
