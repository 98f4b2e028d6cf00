"""Builders of the JSON objects the emulator answers: checkout sessions, line items, lists."""

from dataclasses import dataclass, field
from typing import Any

from .errors import invalid
from .ids import new_id

# Top-level keys of `checkout.session` in Stripe's fixtures3.json, in its order:
# the SDK and the service must see the same shape as from the real API.
SESSION_KEYS = (
    "after_expiration", "allow_promotion_codes", "amount_subtotal", "amount_total",
    "automatic_tax", "billing_address_collection", "cancel_url", "client_reference_id",
    "client_secret", "consent", "consent_collection", "created", "currency",
    "custom_fields", "custom_text", "customer", "customer_creation", "customer_details",
    "customer_email", "expires_at", "id", "invoice", "invoice_creation", "livemode",
    "locale", "metadata", "mode", "object", "payment_intent", "payment_link",
    "payment_method_collection", "payment_method_configuration_details",
    "payment_method_options", "payment_method_types", "payment_status",
    "phone_number_collection", "recovered_from", "saved_payment_method_options",
    "setup_intent", "shipping_address_collection", "shipping_cost", "shipping_options",
    "status", "submit_type", "subscription", "success_url", "total_details", "ui_mode",
    "url", "adaptive_pricing", "discounts", "collected_information", "permissions",
    "wallet_options", "origin_context", "currency_conversion", "customer_account",
    "integration_identifier", "managed_payments",
)  # fmt: skip


_ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"}
    | {"pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$"}


def format_amount(amount: int, currency: str) -> str:
    """Minor units as a person reads them: 3999 usd -> "$39.99", 500 jpy -> "JPY 500"."""
    currency = currency.lower()
    value = f"{amount:,}" if currency in _ZERO_DECIMAL else f"{amount / 100:,.2f}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{value}" if symbol else f"{currency.upper()} {value}"


@dataclass
class LineItemSpec:
    """A validated `line_items[i]` entry with inline `price_data`."""

    name: str
    currency: str
    unit_amount: int
    quantity: int
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class SessionSpec:
    """Validated parameters of `POST /v1/checkout/sessions`."""

    mode: str
    line_items: list[LineItemSpec]
    success_url: str
    expires_at: int
    cancel_url: str | None = None
    client_reference_id: str | None = None
    customer: str | None = None
    customer_email: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    payment_method_types: list[str] | None = None
    locale: str | None = None
    submit_type: str | None = None
    billing_address_collection: str | None = None
    allow_promotion_codes: bool | None = None
    # payment_intent_data[capture_method]: "manual" holds the amount until captured.
    capture_method: str = "automatic_async"
    # payment_intent_data[metadata]: copied onto the PaymentIntent when it is made.
    payment_intent_metadata: dict[str, str] = field(default_factory=dict)

    @property
    def currency(self) -> str:
        return self.line_items[0].currency

    @property
    def amount(self) -> int:
        return sum(item.unit_amount * item.quantity for item in self.line_items)


def build_session(spec: SessionSpec, session_id: str, created: int, url: str) -> dict[str, Any]:
    """A freshly created, open, unpaid payment-mode session as Stripe returns it."""
    amount = spec.amount
    session: dict[str, Any] = {
        "after_expiration": None,
        "allow_promotion_codes": spec.allow_promotion_codes,
        "amount_subtotal": amount,
        "amount_total": amount,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": spec.billing_address_collection,
        "cancel_url": spec.cancel_url,
        "client_reference_id": spec.client_reference_id,
        "client_secret": None,
        "consent": None,
        "consent_collection": None,
        "created": created,
        "currency": spec.currency,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": spec.customer,
        # Stripe's default for payment mode without a given customer.
        "customer_creation": None if spec.customer else "if_required",
        "customer_details": None,
        "customer_email": spec.customer_email,
        "expires_at": spec.expires_at,
        "id": session_id,
        "invoice": None,
        "invoice_creation": {
            "enabled": False,
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": None,
                "footer": None,
                "issuer": None,
                "metadata": {},
                "rendering_options": None,
            },
        },
        "livemode": False,
        "locale": spec.locale,
        "metadata": dict(spec.metadata),
        "mode": spec.mode,
        "object": "checkout.session",
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": list(spec.payment_method_types or ["card"]),
        "payment_status": "unpaid",
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": spec.submit_type,
        "subscription": None,
        "success_url": spec.success_url,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page",
        "url": url,
        "adaptive_pricing": {"enabled": False},
        "discounts": [],
        "collected_information": None,
        "permissions": None,
        "wallet_options": None,
        "origin_context": None,
        "currency_conversion": None,
        "customer_account": None,
        "integration_identifier": None,
        "managed_payments": {"enabled": False},
    }
    return session


def build_line_items(spec: SessionSpec, created: int) -> list[dict[str, Any]]:
    """The `item` objects of a session, as in its `line_items` list."""
    items = []
    for line in spec.line_items:
        total = line.unit_amount * line.quantity
        items.append(
            {
                "id": new_id("li_"),
                "object": "item",
                "amount_discount": 0,
                "amount_subtotal": total,
                "amount_tax": 0,
                "amount_total": total,
                "currency": line.currency,
                "description": line.name,
                "metadata": dict(line.metadata) or None,
                "price": _inline_price(line, created),
                "quantity": line.quantity,
                "adjustable_quantity": None,
            }
        )
    return items


def _inline_price(line: LineItemSpec, created: int) -> dict[str, Any]:
    # price_data creates an inactive one-time price and product behind the scenes.
    return {
        "id": new_id("price_"),
        "object": "price",
        "active": False,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": line.currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": new_id("prod_", 14),
        "recurring": None,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time",
        "unit_amount": line.unit_amount,
        "unit_amount_decimal": str(line.unit_amount),
    }


def mark_complete(
    session: dict[str, Any], email: str | None = None, payment_status: str = "paid"
) -> None:
    """Turn an open session into a completed one: paid after a card payment, or
    "unpaid" while a delayed payment method (a bank debit) is still processing."""
    email = email or session["customer_email"] or "customer@example.com"
    session.update(
        status="complete",
        payment_status=payment_status,
        payment_intent=new_id("pi_"),
        url=None,
        customer_details={
            "address": None,
            "email": email,
            "name": None,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
            "business_name": None,
            "individual_name": None,
        },
        collected_information={
            "shipping_details": None,
            "business_name": None,
            "individual_name": None,
        },
    )


def mark_async_outcome(session: dict[str, Any], succeeded: bool) -> None:
    """A delayed payment's outcome: the money arrived, or the session stays unpaid."""
    if succeeded:
        session["payment_status"] = "paid"


def mark_expired(session: dict[str, Any]) -> None:
    # Stripe clears the URL once a session can no longer be paid.
    session.update(status="expired", url=None)


def list_object(data: list[dict[str, Any]], url: str, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def page_of(
    found: list[dict[str, Any]],
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
    kind: str,
) -> tuple[list[dict[str, Any]], bool]:
    """Cursor pagination over newest-first results, as Stripe's list endpoints do."""
    ids = [obj["id"] for obj in found]
    if starting_after is not None:
        if starting_after not in ids:
            raise invalid(f"No such {kind}: '{starting_after}'", "starting_after")
        rest = found[ids.index(starting_after) + 1 :]
        return rest[:limit], len(rest) > limit
    if ending_before is not None:
        if ending_before not in ids:
            raise invalid(f"No such {kind}: '{ending_before}'", "ending_before")
        before = found[: ids.index(ending_before)]
        return before[-limit:], len(before) > limit
    return found[:limit], len(found) > limit


# -- the payment behind a paid session, and its refunds ------------------------

# Top-level keys of `payment_intent`, `charge` and `refund` in Stripe's
# fixtures3.json, in its order. A refund adds `pending_reason` while pending
# and `failure_reason` once failed, as the API does.
PAYMENT_INTENT_KEYS = (
    "amount", "amount_capturable", "amount_details", "amount_received", "application",
    "application_fee_amount", "automatic_payment_methods", "canceled_at",
    "cancellation_reason", "capture_method", "client_secret", "confirmation_method",
    "created", "currency", "customer", "description", "id", "last_payment_error",
    "latest_charge", "livemode", "metadata", "next_action", "object", "on_behalf_of",
    "payment_method", "payment_method_configuration_details", "payment_method_options",
    "payment_method_types", "processing", "receipt_email", "review", "setup_future_usage",
    "shipping", "statement_descriptor", "statement_descriptor_suffix", "status",
    "transfer_data", "transfer_group", "source", "excluded_payment_method_types",
    "customer_account", "managed_payments",
)  # fmt: skip
CHARGE_KEYS = (
    "amount", "amount_captured", "amount_refunded", "application", "application_fee",
    "application_fee_amount", "balance_transaction", "billing_details",
    "calculated_statement_descriptor", "captured", "created", "currency", "customer",
    "description", "disputed", "failure_balance_transaction", "failure_code",
    "failure_message", "fraud_details", "id", "livemode", "metadata", "object",
    "on_behalf_of", "outcome", "paid", "payment_intent", "payment_method",
    "payment_method_details", "receipt_email", "receipt_number", "receipt_url", "refunded",
    "refunds", "review", "shipping", "source_transfer", "statement_descriptor",
    "statement_descriptor_suffix", "status", "transfer_data", "transfer_group", "source",
)  # fmt: skip
REFUND_KEYS = (
    "amount", "balance_transaction", "charge", "created", "currency", "destination_details",
    "id", "metadata", "object", "payment_intent", "reason", "receipt_number",
    "source_transfer_reversal", "status", "transfer_reversal", "customer",
    "customer_account", "payment_method",
)  # fmt: skip
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
REFUND_FAILURE_REASONS = (
    "lost_or_stolen_card", "expired_or_canceled_card", "charge_for_pending_refund_disputed",
    "insufficient_funds", "declined", "merchant_request", "unknown",
)  # fmt: skip


@dataclass
class RefundSpec:
    """Validated parameters of `POST /v1/refunds`."""

    payment_intent: str | None = None
    charge: str | None = None
    amount: int | None = None  # None: what is left to refund
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


# How long a card's authorization holds before the issuer lets it go (Stripe: 7 days for
# online card payments).
HOLD_SECONDS = 7 * 24 * 60 * 60


def build_payment(
    session: dict[str, Any], created: int, *, delayed: bool, manual: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PaymentIntent (id: the session's `payment_intent`) and its charge for a
    completed session: succeeded for a card, processing / pending for a bank debit,
    requires_capture for a card held by manual capture (an authorized, uncaptured charge
    whose card details say until when it can be captured)."""
    pi_id, amount, currency = (
        session["payment_intent"],
        session["amount_total"],
        session["currency"],
    )
    email = (session.get("customer_details") or {}).get("email")
    method_type = "us_bank_account" if delayed else "card"
    method_id = new_id("pm_")
    charge_id = new_id("ch_")
    intent: dict[str, Any] = {
        "amount": amount,
        "amount_capturable": amount if manual else 0,
        "amount_details": {"tip": {}},
        "amount_received": 0 if delayed or manual else amount,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "manual" if manual else "automatic_async",
        "client_secret": f"{pi_id}_secret_{new_id('', 25)}",
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": session["customer"],
        "description": None,
        "id": pi_id,
        "last_payment_error": None,
        "latest_charge": charge_id,
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "object": "payment_intent",
        "on_behalf_of": None,
        "payment_method": method_id,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": [method_type],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "processing" if delayed else "requires_capture" if manual else "succeeded",
        "transfer_data": None,
        "transfer_group": None,
        "source": None,
        "excluded_payment_method_types": None,
        "customer_account": None,
        "managed_payments": {"enabled": False},
    }
    charge: dict[str, Any] = {
        "amount": amount,
        "amount_captured": 0 if manual else amount,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None if delayed else new_id("txn_"),
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": email,
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "H2S EMULATOR",
        "captured": not manual,
        "created": created,
        "currency": currency,
        "customer": session["customer"],
        "description": None,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "id": charge_id,
        "livemode": False,
        "metadata": {},
        "object": "charge",
        "on_behalf_of": None,
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": not delayed,
        "payment_intent": pi_id,
        "payment_method": method_id,
        "payment_method_details": _method_details(method_type),
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "refunds": list_object([], f"/v1/charges/{charge_id}/refunds"),
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "pending" if delayed else "succeeded",
        "transfer_data": None,
        "transfer_group": None,
        "source": None,
    }
    if manual:
        charge["payment_method_details"]["card"]["capture_before"] = created + HOLD_SECONDS
    return intent, charge


def mark_captured(intent: dict[str, Any], charge: dict[str, Any], amount: int) -> None:
    """A held payment captured for `amount`; the rest of the hold is released."""
    intent.update(status="succeeded", amount_capturable=0, amount_received=amount)
    charge.update(captured=True, amount_captured=amount, balance_transaction=new_id("txn_"))


def mark_canceled(intent: dict[str, Any], reason: str | None, at: int) -> None:
    """A PaymentIntent cancelled: by the caller (its reason) or by Stripe (`automatic`,
    a hold that lapsed); what it held goes back to the card."""
    intent.update(
        status="canceled", amount_capturable=0, canceled_at=at, cancellation_reason=reason
    )


def _method_details(method_type: str) -> dict[str, Any]:
    if method_type == "card":
        details: dict[str, Any] = {
            "brand": "visa",
            "country": "US",
            "exp_month": 12,
            "exp_year": 2034,
            "funding": "credit",
            "last4": "4242",
            "network": "visa",
        }
    else:
        details = {"account_holder_type": "individual", "bank_name": "STRIPE TEST BANK"}
        details |= {"last4": "6789", "routing_number": "110000000"}
    return {method_type: details, "type": method_type}


def mark_payment_outcome(intent: dict[str, Any], charge: dict[str, Any], succeeded: bool) -> None:
    """A delayed payment's money arrived (or did not): its intent and charge follow."""
    if succeeded:
        intent.update(status="succeeded", amount_received=intent["amount"])
        charge.update(status="succeeded", paid=True, balance_transaction=new_id("txn_"))
        return
    intent.update(
        status="requires_payment_method",
        last_payment_error={
            "code": "payment_method_provider_decline",
            "message": "The customer's bank declined the debit.",
            "type": "card_error",
        },
    )
    charge.update(
        status="failed",
        failure_code="insufficient_funds",
        failure_message="The customer's account has insufficient funds to cover this payment.",
        outcome={
            **charge["outcome"],
            "network_status": "declined_by_network",
            "type": "issuer_declined",
        },
    )


def build_refund(
    spec: RefundSpec, charge: dict[str, Any], amount: int, created: int, *, pending: bool
) -> dict[str, Any]:
    refund: dict[str, Any] = {
        "amount": amount,
        "balance_transaction": None if pending else new_id("txn_"),
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "id": new_id("re_"),
        "metadata": dict(spec.metadata),
        "object": "refund",
        "payment_intent": charge["payment_intent"],
        "reason": spec.reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "pending" if pending else "succeeded",
        "transfer_reversal": None,
        "customer": charge["customer"],
        "customer_account": None,
        "payment_method": charge["payment_method"],
    }
    if pending:
        refund["pending_reason"] = "processing"
    return refund


def mark_refund_outcome(refund: dict[str, Any], failure_reason: str | None) -> None:
    """A pending refund succeeded (`failure_reason` None) or failed."""
    refund.pop("pending_reason", None)
    if failure_reason is None:
        refund.update(status="succeeded", balance_transaction=new_id("txn_"))
    else:
        refund.update(status="failed", failure_reason=failure_reason)
        refund["failure_balance_transaction"] = new_id("txn_")
