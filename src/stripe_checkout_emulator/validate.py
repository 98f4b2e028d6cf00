"""Validation of API parameters (sessions, refunds) with Stripe's messages and param names."""

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import invalid, missing_param, resource_missing, unknown_param
from .objects import REFUND_REASONS, LineItemSpec, RefundSpec, SessionSpec

# Top-level parameters of POST /v1/checkout/sessions in the SDK's
# SessionCreateParams (stripe 16, API 2026-10-28.endive): anything else, such as
# payment_method_types (older versions'; now allowed_payment_method_types), is
# rejected as Stripe rejects unknown params (400 parameter_unknown).
CREATE_PARAMS = frozenset({
    "adaptive_pricing", "after_expiration", "allow_promotion_codes",
    "allowed_payment_method_types", "automatic_tax", "billing_address_collection",
    "branding_settings", "cancel_url", "client_reference_id", "consent_collection",
    "currency", "custom_fields", "custom_text", "customer", "customer_account",
    "customer_creation", "customer_email", "customer_update", "discounts",
    "excluded_payment_method_types", "expand", "expires_at", "integration_identifier",
    "invoice_creation", "line_items", "locale", "managed_payments", "metadata", "mode",
    "name_collection", "optional_items", "origin_context", "payment_intent_data",
    "payment_method_collection", "payment_method_configuration", "payment_method_data",
    "payment_method_options", "permissions",
    "phone_number_collection", "redirect_on_completion", "return_url",
    "saved_payment_method_options", "setup_intent_data", "shipping_address_collection",
    "shipping_options", "submit_type", "subscription_data", "success_url",
    "tax_id_collection", "ui_mode", "wallet_options",
})  # fmt: skip
LIST_PARAMS = frozenset({
    "created", "customer", "customer_account", "customer_details", "ending_before",
    "expand", "limit", "payment_intent", "payment_link", "starting_after", "status",
    "subscription",
})  # fmt: skip
# POST /v1/refunds and GET /v1/refunds in the SDK's RefundCreateParams / RefundListParams.
REFUND_PARAMS = frozenset({
    "amount", "charge", "currency", "customer", "expand", "instructions_email", "metadata",
    "origin", "payment_intent", "reason", "refund_application_fee", "reverse_transfer",
})  # fmt: skip
REFUND_LIST_PARAMS = frozenset(
    {"charge", "created", "ending_before", "expand", "limit", "payment_intent", "starting_after"}
)
LINE_ITEM_PARAMS = frozenset(
    {"adjustable_quantity", "metadata", "price", "price_data", "quantity", "tax_rates"}
)
PRICE_DATA_PARAMS = frozenset(
    {
        "currency",
        "product",
        "product_data",
        "recurring",
        "tax_behavior",
        "unit_amount",
        "unit_amount_decimal",
    }
)
PRODUCT_DATA_PARAMS = frozenset(
    {"description", "images", "metadata", "name", "tax_code", "tax_details", "unit_label"}
)

# The SDK's ui_mode values; hosted_page (the default) is the only one emulated.
UI_MODES = ("elements", "embedded_page", "form", "hosted_page")
HOSTED_PAGE = "hosted_page"

MIN_EXPIRY = 30 * 60
MAX_EXPIRY = 24 * 60 * 60
# A client computing "now + 30 min" reaches us a moment later; without this
# grace the shortest allowed expiry would fail at second boundaries.
EXPIRY_GRACE = 10
MAX_AMOUNT = 99_999_999
# Stripe's minimum charge per currency (smallest unit); others are not checked.
MIN_AMOUNT = {
    "usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "nzd": 50, "chf": 50,
    "sgd": 50, "jpy": 50, "inr": 50, "brl": 50, "dkk": 250, "nok": 300, "sek": 300,
    "pln": 200, "czk": 1500, "huf": 17500, "hkd": 400, "mxn": 1000, "ron": 200,
    "bgn": 100, "aed": 200, "thb": 1000, "myr": 200,
}  # fmt: skip
SESSION_STATUSES = ("open", "complete", "expired")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CURRENCY = re.compile(r"^[a-z]{3}$")


@dataclass
class RefundListQuery:
    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    payment_intent: str | None = None
    charge: str | None = None


@dataclass
class ListQuery:
    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    client_reference_id: str | None = None
    status: str | None = None
    customer: str | None = None
    payment_intent: str | None = None


def parse_create(params: dict[str, Any], now: int) -> SessionSpec:
    """Validate create params into a SessionSpec, or raise the StripeError Stripe would."""
    _check_known(params, CREATE_PARAMS, "")
    mode = _string(params, "mode")
    if mode is None:
        raise missing_param("mode")
    if mode not in ("payment", "setup", "subscription"):
        raise invalid("Invalid mode: must be one of payment, setup, or subscription", "mode")
    if mode != "payment":
        raise invalid("The Stripe emulator supports only mode=payment.", "mode")
    ui_mode = _string(params, "ui_mode") or HOSTED_PAGE
    if ui_mode not in UI_MODES:
        raise invalid(
            f"Invalid ui_mode: must be one of {', '.join(UI_MODES[:-1])} or {UI_MODES[-1]}",
            "ui_mode",
        )
    if ui_mode != HOSTED_PAGE:
        raise invalid(f"The Stripe emulator supports only ui_mode={HOSTED_PAGE}.", "ui_mode")

    success_url = _url(params, "success_url")
    if success_url is None:
        raise missing_param("success_url")
    line_items = _line_items(params.get("line_items"))
    currency = line_items[0].currency
    if any(item.currency != currency for item in line_items):
        raise invalid("All line items must use the same currency.", "line_items")
    top_currency = _string(params, "currency")
    if top_currency is not None and top_currency.lower() != currency:
        raise invalid(
            f"The currency `{top_currency}` does not match the currency of the line "
            f"items (`{currency}`).",
            "currency",
        )
    spec = SessionSpec(
        mode=mode,
        line_items=line_items,
        success_url=success_url,
        expires_at=_expires_at(params, now),
        cancel_url=_url(params, "cancel_url"),
        client_reference_id=_string(params, "client_reference_id", max_length=200),
        customer=_string(params, "customer"),
        customer_email=_email(params, "customer_email"),
        metadata=_metadata(params.get("metadata"), "metadata"),
        payment_method_types=_string_list(params, "allowed_payment_method_types"),
        locale=_string(params, "locale"),
        submit_type=_string(params, "submit_type"),
        billing_address_collection=_string(params, "billing_address_collection"),
        allow_promotion_codes=_boolean(params, "allow_promotion_codes"),
        capture_method=_capture_method(params.get("payment_intent_data")),
        payment_intent_metadata=_intent_metadata(params.get("payment_intent_data")),
    )
    _check_amount(spec.amount, currency)
    return spec


def parse_list(params: dict[str, Any]) -> ListQuery:
    _check_known(params, LIST_PARAMS, "")
    query = ListQuery(
        starting_after=_string(params, "starting_after"),
        ending_before=_string(params, "ending_before"),
        client_reference_id=_string(params, "client_reference_id"),
        status=_string(params, "status"),
        customer=_string(params, "customer"),
        payment_intent=_string(params, "payment_intent"),
    )
    query.limit = _limit(params, query.limit)
    if query.status is not None and query.status not in SESSION_STATUSES:
        raise invalid("Invalid status: must be one of open, complete, or expired", "status")
    return query


def parse_refund(params: dict[str, Any]) -> RefundSpec:
    """Validate `POST /v1/refunds` params into a RefundSpec, or raise Stripe's error."""
    _check_known(params, REFUND_PARAMS, "")
    for unsupported in ("customer", "origin", "instructions_email", "currency"):
        if unsupported in params:
            raise invalid(
                f"The Stripe emulator refunds payments only; `{unsupported}` is not supported.",
                unsupported,
            )
    amount = _integer(params.get("amount"), "amount")
    if amount is not None and amount < 1:
        raise invalid("Invalid positive integer", "amount")
    reason = _string(params, "reason")
    if reason is not None and reason not in REFUND_REASONS:
        raise invalid(
            "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
            "reason",
        )
    return RefundSpec(
        payment_intent=_string(params, "payment_intent") or None,
        charge=_string(params, "charge") or None,
        amount=amount,
        reason=reason,
        metadata=_metadata(params.get("metadata"), "metadata"),
    )


CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
# POST /v1/payment_intents/{id}/capture and /cancel in the SDK's PaymentIntentCaptureParams
# and PaymentIntentCancelParams (those the emulator does not model are refused by name).
CAPTURE_PARAMS = frozenset({
    "amount_details", "amount_to_capture", "application_fee_amount", "expand",
    "final_capture", "hooks", "metadata", "payment_details", "statement_descriptor",
    "statement_descriptor_suffix", "transfer_data",
})  # fmt: skip
CANCEL_PARAMS = frozenset({"cancellation_reason", "expand"})
# What a caller may give; Stripe itself cancels with "automatic" (a hold that lapsed) and
# others, which no request may name.
CANCELLATION_REASONS = ("abandoned", "duplicate", "fraudulent", "requested_by_customer")


def _capture_method(raw: Any) -> str:
    """`payment_intent_data[capture_method]`: how the session's payment is captured."""
    if not isinstance(raw, dict) or raw.get("capture_method") in (None, ""):
        return "automatic_async"
    method = raw["capture_method"]
    if method not in CAPTURE_METHODS:
        raise invalid(
            "Invalid payment_intent_data[capture_method]: must be one of automatic, "
            "automatic_async, or manual",
            "payment_intent_data[capture_method]",
        )
    return str(method)


def _intent_metadata(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or raw.get("metadata") in (None, ""):
        return {}
    return _metadata(raw["metadata"], "payment_intent_data[metadata]")


def parse_capture(params: dict[str, Any]) -> int | None:
    """`amount_to_capture` of a capture, None for all of what is capturable."""
    _check_known(params, CAPTURE_PARAMS, "")
    for unsupported in sorted(CAPTURE_PARAMS - {"amount_to_capture", "expand", "metadata"}):
        if unsupported in params:
            raise invalid(
                f"The Stripe emulator does not support `{unsupported}` on a capture.",
                unsupported,
            )
    amount = _integer(params.get("amount_to_capture"), "amount_to_capture")
    if amount is not None and amount < 1:
        raise invalid("Invalid positive integer", "amount_to_capture")
    return amount


def parse_cancel(params: dict[str, Any]) -> str | None:
    """The `cancellation_reason` of a PaymentIntent's cancel, if given."""
    _check_known(params, CANCEL_PARAMS, "")
    reason = _string(params, "cancellation_reason")
    if reason is not None and reason not in CANCELLATION_REASONS:
        raise invalid(
            "Invalid cancellation_reason: must be one of abandoned, duplicate, fraudulent, "
            "or requested_by_customer",
            "cancellation_reason",
        )
    return reason


def parse_refund_list(params: dict[str, Any]) -> RefundListQuery:
    _check_known(params, REFUND_LIST_PARAMS, "")
    if "created" in params:
        raise invalid("The Stripe emulator does not filter refunds by `created`.", "created")
    query = RefundListQuery(
        starting_after=_string(params, "starting_after"),
        ending_before=_string(params, "ending_before"),
        payment_intent=_string(params, "payment_intent"),
        charge=_string(params, "charge"),
    )
    query.limit = _limit(params, query.limit)
    return query


def parse_expand(params: dict[str, Any], allowed: frozenset[str]) -> set[str]:
    """The `expand[]` paths, each of which must be expandable here."""
    raw = params.get("expand")
    if raw is None:
        return set()
    values = raw if isinstance(raw, list) else [raw]
    for value in values:
        if not isinstance(value, str):
            raise invalid("Invalid array", "expand")
        if value not in allowed:
            raise invalid(f"This property cannot be expanded ({value}).", "expand")
    return set(values)


def _limit(params: dict[str, Any], default: int) -> int:
    limit = _integer(params.get("limit"), "limit")
    if limit is None:
        return default
    if not 1 <= limit <= 100:
        raise invalid("This value must be between 1 and 100 (inclusive).", "limit")
    return limit


def check_only(params: dict[str, Any], allowed: frozenset[str]) -> None:
    _check_known(params, allowed, "")


def _check_known(params: dict[str, Any], allowed: frozenset[str], prefix: str) -> None:
    for key in params:
        if key not in allowed:
            raise unknown_param(f"{prefix}[{key}]" if prefix else key)


def _line_items(raw: Any) -> list[LineItemSpec]:
    if raw is None or raw == "":
        raise missing_param("line_items")
    if not isinstance(raw, list):
        raise invalid("Invalid array", "line_items")
    if not raw:
        raise missing_param("line_items")
    return [_line_item(entry, f"line_items[{i}]") for i, entry in enumerate(raw)]


def _line_item(entry: Any, prefix: str) -> LineItemSpec:
    if not isinstance(entry, dict):
        raise invalid("Invalid object", prefix)
    _check_known(entry, LINE_ITEM_PARAMS, prefix)
    if "price" in entry:
        # The emulator keeps no price catalogue, so every price id is unknown.
        raise resource_missing("price", str(entry["price"]), f"{prefix}[price]")
    price_data = entry.get("price_data")
    if price_data is None:
        raise invalid(f"You must specify either `price` or `price_data` in `{prefix}`.", prefix)
    if not isinstance(price_data, dict):
        raise invalid("Invalid object", f"{prefix}[price_data]")
    pd_prefix = f"{prefix}[price_data]"
    _check_known(price_data, PRICE_DATA_PARAMS, pd_prefix)
    if "recurring" in price_data:
        raise invalid("Recurring prices require mode=subscription.", f"{pd_prefix}[recurring]")
    currency = _string(price_data, "currency", param=f"{pd_prefix}[currency]")
    if currency is None:
        raise missing_param(f"{pd_prefix}[currency]")
    currency = currency.lower()
    if not _CURRENCY.match(currency):
        raise invalid(f"Invalid currency: {currency}.", f"{pd_prefix}[currency]")
    unit_amount = _integer(price_data.get("unit_amount"), f"{pd_prefix}[unit_amount]")
    if unit_amount is None:
        raise missing_param(f"{pd_prefix}[unit_amount]")
    if unit_amount < 0:
        raise invalid("This value must be greater than or equal to 0.", f"{pd_prefix}[unit_amount]")
    if "product" in price_data:
        raise resource_missing("product", str(price_data["product"]), f"{pd_prefix}[product]")
    product = price_data.get("product_data")
    if product is None:
        raise invalid(
            "You must specify either `product` or `product_data` when creating a price.", pd_prefix
        )
    if not isinstance(product, dict):
        raise invalid("Invalid object", f"{pd_prefix}[product_data]")
    _check_known(product, PRODUCT_DATA_PARAMS, f"{pd_prefix}[product_data]")
    name = _string(product, "name", param=f"{pd_prefix}[product_data][name]")
    if not name:
        raise missing_param(f"{pd_prefix}[product_data][name]")
    quantity = _integer(entry.get("quantity"), f"{prefix}[quantity]")
    if quantity is None:
        raise missing_param(f"{prefix}[quantity]")
    if quantity < 1:
        raise invalid("This value must be greater than or equal to 1.", f"{prefix}[quantity]")
    return LineItemSpec(
        name=name,
        currency=currency,
        unit_amount=unit_amount,
        quantity=quantity,
        description=_string(
            product, "description", param=f"{pd_prefix}[product_data][description]"
        ),
        metadata=_metadata(entry.get("metadata"), f"{prefix}[metadata]"),
    )


def _check_amount(amount: int, currency: str) -> None:
    minimum = MIN_AMOUNT.get(currency, 0)
    if amount < minimum:
        raise invalid(
            f"The Checkout Session's total amount due must add up to at least {minimum} "
            f"(smallest {currency} unit)."
        )
    if amount > MAX_AMOUNT:
        raise invalid(f"The Checkout Session's total amount due must be no more than {MAX_AMOUNT}.")


def _expires_at(params: dict[str, Any], now: int) -> int:
    value = _integer(params.get("expires_at"), "expires_at")
    if value is None:
        return now + MAX_EXPIRY
    if value < now + MIN_EXPIRY - EXPIRY_GRACE:
        raise invalid(
            "The `expires_at` timestamp must be at least 30 minutes from Checkout "
            "Session creation.",
            "expires_at",
        )
    if value > now + MAX_EXPIRY:
        raise invalid(
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
            "expires_at",
        )
    return value


def _string(
    params: dict[str, Any], key: str, *, param: str | None = None, max_length: int | None = None
) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("Invalid string", param or key)
    if max_length is not None and len(value) > max_length:
        raise invalid(f"Invalid string: must be at most {max_length} characters", param or key)
    return value


def _integer(value: Any, param: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise invalid(f"Invalid integer: {value}", param)
    return int(value)


def _boolean(params: dict[str, Any], key: str) -> bool | None:
    value = params.get(key)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise invalid(f"Invalid boolean: {value}", key)
    return value == "true"


def _url(params: dict[str, Any], key: str) -> str | None:
    value = _string(params, key, max_length=5000)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid("Not a valid URL", key, "url_invalid")
    return value


def _email(params: dict[str, Any], key: str) -> str | None:
    value = _string(params, key)
    if value is not None and not _EMAIL.match(value):
        raise invalid(f"Invalid email address: {value}", key, "email_invalid")
    return value


def _string_list(params: dict[str, Any], key: str) -> list[str] | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid("Invalid array", key)
    return value


def _metadata(value: Any, param: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, list):
        # The form decoder turns all-numeric keys into a list; metadata keys
        # are strings whatever they look like, so undo that.
        value = {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        raise invalid("Invalid hash", param)
    if len(value) > 50:
        raise invalid("Invalid metadata: at most 50 keys are allowed", param)
    result = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid("Invalid metadata: values must be strings", f"{param}[{key}]")
        if len(key) > 40:
            raise invalid("Invalid metadata: keys must be at most 40 characters", f"{param}[{key}]")
        if len(item) > 500:
            raise invalid(
                "Invalid metadata: values must be at most 500 characters", f"{param}[{key}]"
            )
        # Stripe treats an empty value as "unset this key".
        if item != "":
            result[key] = item
    return result
