"""Carts priced from the catalog, normalised emails and addresses, the cart fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from h2s_checkout.domain.errors import AmountTooLarge, QuantityOutOfRange, UnknownSku

# The most one payment may be: Stripe's bound for a two-decimal currency, in cents.
MAX_TOTAL_CENTS = 99_999_999


@dataclass(frozen=True, slots=True)
class CatalogItem:
    sku: str
    name: str
    description: str
    unit_amount_cents: int
    currency: str
    max_quantity: int
    # One more at every change: phase 1 checks the versions a cart was priced from.
    version: int = 1
    active: bool = True


@dataclass(frozen=True, slots=True)
class CartLine:
    sku: str
    name: str
    quantity: int
    unit_amount_cents: int
    currency: str
    catalog_version: int = 1

    @property
    def amount_cents(self) -> int:
        return self.unit_amount_cents * self.quantity


@dataclass(frozen=True, slots=True)
class PricedCart:
    lines: tuple[CartLine, ...]
    currency: str

    @property
    def subtotal_cents(self) -> int:
        return sum(line.amount_cents for line in self.lines)

    @property
    def total_cents(self) -> int:
        # No tax or discounts yet: the total is the subtotal, kept apart so that adding
        # them later does not change what either column means.
        return self.subtotal_cents

    @property
    def catalog_versions(self) -> dict[str, int]:
        """The version of each item the cart was priced from (phase 1 checks them)."""
        return {line.sku: line.catalog_version for line in self.lines}


def normalize_email(email: str) -> str:
    """The identity of a customer: trimmed and lower-cased."""
    return email.strip().lower()


# The fields of a service address, in the order the booking key joins them.
ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postal_code", "country")


def normalize_address_field(value: str | None) -> str:
    """Case, surrounding and repeated whitespace do not make another address."""
    return " ".join((value or "").split()).lower()


def normalize_address(address: Mapping[str, str | None]) -> str:
    """The service address as one canonical string: what makes two bookings distinct.

    Fields are joined with a newline, which no address field may contain (the API refuses
    control characters), so "1 Main St" + "Apt 2" never equals "1 Main St Apt" + "2".
    """
    return "\n".join(normalize_address_field(address.get(name)) for name in ADDRESS_FIELDS)


def merge_lines(items: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Quantities per SKU, with repeated lines of one SKU added together."""
    merged: dict[str, int] = {}
    for sku, quantity in items:
        merged[sku] = merged.get(sku, 0) + quantity
    return dict(sorted(merged.items()))


def cart_fingerprint(items: Iterable[tuple[str, int]]) -> str:
    """A digest of the cart that ignores line order and line splitting."""
    canonical = ";".join(f"{sku}x{qty}" for sku, qty in merge_lines(items).items())
    return hashlib.sha256(canonical.encode()).hexdigest()


def price_cart(items: Iterable[tuple[str, int]], catalog: Mapping[str, CatalogItem]) -> PricedCart:
    """Price the cart from the catalog only; the client never sends a price."""
    lines = []
    for sku, quantity in merge_lines(items).items():
        entry = catalog.get(sku)
        if entry is None:
            raise UnknownSku(f"unknown sku {sku!r}", sku=sku)
        if not 1 <= quantity <= entry.max_quantity:
            raise QuantityOutOfRange(
                f"quantity of {sku!r} must be between 1 and {entry.max_quantity}",
                sku=sku,
                max_quantity=entry.max_quantity,
            )
        lines.append(
            CartLine(
                sku=sku,
                name=entry.name,
                quantity=quantity,
                unit_amount_cents=entry.unit_amount_cents,
                currency=entry.currency,
                catalog_version=entry.version,
            )
        )
    currencies = {line.currency for line in lines}
    if len(currencies) != 1:
        # One Checkout Session has one currency; the catalog is single-currency today.
        raise UnknownSku("the cart mixes currencies", currencies=sorted(currencies))
    cart = PricedCart(lines=tuple(lines), currency=currencies.pop())
    if cart.total_cents > MAX_TOTAL_CENTS:
        raise AmountTooLarge(
            f"the cart's total is more than one payment may be ({MAX_TOTAL_CENTS} cents)",
            total_cents=cart.total_cents,
        )
    return cart
