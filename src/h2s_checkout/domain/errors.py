"""Domain errors, each with the stable code and HTTP status a client sees."""

from __future__ import annotations

from typing import Any


class CheckoutError(Exception):
    """Base of every error the service answers with a stable code."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, checkout_id: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.checkout_id = checkout_id
        self.extra = extra


class InvalidRequest(CheckoutError):
    code = "invalid_request"
    status = 400


class UnknownSku(CheckoutError):
    code = "unknown_sku"
    status = 422


class QuantityOutOfRange(CheckoutError):
    code = "quantity_out_of_range"
    status = 422


class NotFound(CheckoutError):
    code = "not_found"
    status = 404


class Unauthorized(CheckoutError):
    code = "unauthorized"
    status = 401


class PaymentProviderError(CheckoutError):
    """The payment provider failed or refused; the checkout was cleaned up."""

    code = "payment_provider_error"
    status = 502


class DatabaseUnavailable(CheckoutError):
    code = "database_unavailable"
    status = 503


class IllegalTransition(CheckoutError):
    code = "illegal_transition"
    status = 500


class IdempotencyKeyReused(CheckoutError):
    """The same Idempotency-Key came with another body (IETF draft: 422)."""

    code = "idempotency_key_reused"
    status = 422


class CheckoutInProgress(CheckoutError):
    """A request with this key is still running; retry after ``retry_after_s``."""

    code = "checkout_in_progress"
    status = 409

    def __init__(self, message: str, *, retry_after_s: int = 1, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class Forbidden(CheckoutError):
    """A valid key without the scope the operation needs."""

    code = "forbidden"
    status = 403


class CrossSiteRequest(Forbidden):
    """A browser form posted from another site (sign-in CSRF): refused whatever it holds."""

    code = "cross_site_request"


class RateLimited(CheckoutError):
    """Over a limit; nothing was written. Retry after ``retry_after_s``."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after_s: int, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class KeyNameTaken(CheckoutError):
    """Another key in force already has this name (names say who acted)."""

    code = "key_name_taken"
    status = 409


class KeyNameReserved(InvalidRequest):
    """A key name that reads as one of the service's own actors in traces and logs."""

    code = "key_name_reserved"


class EndpointNotEnabled(CheckoutError):
    """A delivery to an endpoint that is disabled or deleted cannot be sent again."""

    code = "endpoint_not_enabled"
    status = 409


class SkuTaken(CheckoutError):
    """A catalog item with this sku exists (active or not): items are never deleted."""

    code = "sku_taken"
    status = 409


class UnknownCurrency(CheckoutError):
    code = "unknown_currency"
    status = 422


class PriceBelowMinimum(CheckoutError):
    """A price below the smallest charge the payment provider takes in its currency."""

    code = "price_below_minimum"
    status = 422


class AmountTooLarge(CheckoutError):
    """A cart whose total is more than one payment may be (Stripe: 99,999,999 cents)."""

    code = "amount_too_large"
    status = 422


class PreconditionFailed(CheckoutError):
    """The If-Match given is not the resource's current ETag: someone changed it since."""

    code = "precondition_failed"
    status = 412


class PreconditionRequired(CheckoutError):
    """A change that must say which version it changes came without If-Match."""

    code = "precondition_required"
    status = 428


class OutsideServiceArea(CheckoutError):
    """The service address is in no area the shop serves; nothing was written."""

    code = "outside_service_area"
    status = 422


class CatalogChanged(CheckoutError):
    """The catalog changed twice while this checkout was priced; nothing was written."""

    code = "catalog_changed"
    status = 409

    def __init__(self, message: str, *, retry_after_s: int = 1, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s
