"""Builders of the JSON objects the emulator answers: checkout sessions, line items, lists."""

from dataclasses import dataclass, field
from typing import Any

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
        "ui_mode": "hosted",
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
