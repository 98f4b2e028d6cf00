"""The catalog as shop staff change it: an item's fields, their rules, its ETag. Pure code.

An item is never deleted (orders keep pointing at it): it is deactivated and can come
back. Every change makes the item's version one more; its ETag names that version, so a
change sent with an older ETag (someone else changed the item meanwhile) is refused.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from h2s_checkout.domain.cart import CatalogItem
from h2s_checkout.domain.errors import (
    InvalidRequest,
    PreconditionFailed,
    PreconditionRequired,
    PriceBelowMinimum,
    UnknownCurrency,
)

SKU = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
# Stripe's largest amount for a two-decimal currency (99,999,999 minor units).
MAX_UNIT_AMOUNT_CENTS = 99_999_999
MAX_QUANTITY_BOUND = 100
# The currencies an item may be priced in: Stripe's two-decimal ones with the smallest
# charge Stripe takes in each (in cents). A price is in cents, so zero-decimal currencies
# such as jpy, whose amount is in whole units, are left out until the catalog says how
# many decimals it means.
MIN_CHARGE_CENTS = {
    "usd": 50, "cad": 50, "eur": 50, "gbp": 30, "aud": 50, "nzd": 50, "chf": 50,
    "sgd": 50, "inr": 50, "brl": 50, "dkk": 250, "nok": 300, "sek": 300, "pln": 200,
    "czk": 1500, "hkd": 400, "mxn": 1000, "aed": 200,
}  # fmt: skip
CURRENCIES = frozenset(MIN_CHARGE_CENTS)
# The fields a change may set; sku is the item's name for good, and version is ours.
CHANGEABLE = ("name", "description", "unit_amount_cents", "currency", "max_quantity", "active")


@dataclass(frozen=True, slots=True)
class ItemChange:
    """What a PATCH asks for: None is "leave as it is"."""

    name: str | None = None
    description: str | None = None
    unit_amount_cents: int | None = None
    currency: str | None = None
    max_quantity: int | None = None
    active: bool | None = None


def check_item(item: CatalogItem) -> CatalogItem:
    """The item if every field keeps its rules (the API's schema checks the same first)."""
    if not SKU.match(item.sku):
        raise InvalidRequest(
            "sku must be 2 to 64 of a-z, 0-9 and -, starting with a letter or digit"
        )
    if not 1 <= len(item.name) <= 200 or not item.name.strip():
        raise InvalidRequest("name must be 1 to 200 characters")
    if len(item.description) > 2000:
        raise InvalidRequest("description must be at most 2000 characters")
    if not 1 <= item.unit_amount_cents <= MAX_UNIT_AMOUNT_CENTS:
        raise InvalidRequest(f"unit_amount_cents must be between 1 and {MAX_UNIT_AMOUNT_CENTS}")
    if item.currency not in CURRENCIES:
        raise UnknownCurrency(
            f"currency must be one of {', '.join(sorted(CURRENCIES))}", currency=item.currency
        )
    if item.unit_amount_cents < MIN_CHARGE_CENTS[item.currency]:
        # One of it alone could never be paid for: Stripe refuses a smaller charge.
        raise PriceBelowMinimum(
            f"the smallest charge in {item.currency} is {MIN_CHARGE_CENTS[item.currency]} cents",
            minimum_cents=MIN_CHARGE_CENTS[item.currency],
        )
    if not 1 <= item.max_quantity <= MAX_QUANTITY_BOUND:
        raise InvalidRequest(f"max_quantity must be between 1 and {MAX_QUANTITY_BOUND}")
    return item


def changed(item: CatalogItem, change: ItemChange) -> CatalogItem:
    """The item with the change applied and checked, its version one more; the same item
    when the change sets nothing new, or nothing at all (no new version for nothing)."""
    fields = {k: v for k, v in asdict(change).items() if v is not None}
    after = check_item(replace(item, **fields))
    if after == item:
        return item
    return replace(after, version=item.version + 1)


def action_of(before: CatalogItem | None, after: CatalogItem) -> str:
    """How the history names a change."""
    if before is None:
        return "created"
    if before.active and not after.active:
        return "deactivated"
    if not before.active and after.active:
        return "reactivated"
    return "updated"


def fields_of(item: CatalogItem) -> dict[str, Any]:
    """An item as the API, the history and the events show it."""
    return asdict(item)


def item_etag(item: CatalogItem) -> str:
    return f'"{item.sku}.v{item.version}"'


def catalog_etag(items: Iterable[CatalogItem]) -> str:
    """The storefront catalog's ETag: it changes with any item's version or presence."""
    digest = hashlib.sha256(";".join(f"{i.sku}.v{i.version}" for i in items).encode())
    return f'"catalog.{digest.hexdigest()[:20]}"'


def check_if_match(if_match: str | None, current_etag: str) -> None:
    """Refuse a change that does not name the current version: 428 without If-Match, 412
    with another (RFC 9110 13.1.1: a list of ETags, or *, which is any current one)."""
    if if_match is None or not if_match.strip():
        raise PreconditionRequired(
            "send If-Match with the ETag of the version you change (GET it first)"
        )
    given = [tag.strip().removeprefix("W/") for tag in if_match.split(",")]
    if "*" not in given and current_etag not in given:
        raise PreconditionFailed(
            "it was changed since the ETag you sent: GET it again and reapply your change",
            current_etag=current_etag,
        )


def item_from(row: Mapping[str, Any]) -> CatalogItem:
    return CatalogItem(
        sku=row["sku"],
        name=row["name"],
        description=row["description"],
        unit_amount_cents=row["unit_amount_cents"],
        currency=row["currency"],
        max_quantity=row["max_quantity"],
        version=row["version"],
        active=row["active"],
    )
