"""Pricing from the catalog, email normalisation and the cart fingerprint."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2s_checkout.domain.cart import (
    CatalogItem,
    cart_fingerprint,
    merge_lines,
    normalize_address,
    normalize_email,
    price_cart,
)
from h2s_checkout.domain.errors import QuantityOutOfRange, UnknownSku
from h2s_checkout.domain.keys import derived_key

CATALOG = {
    "tv-mount": CatalogItem("tv-mount", "TV", "", 14900, "usd", 10),
    "smart-lock": CatalogItem("smart-lock", "Lock", "", 12900, "usd", 10),
}


def test_prices_come_from_the_catalog():
    cart = price_cart([("tv-mount", 2), ("smart-lock", 1)], CATALOG)
    assert cart.subtotal_cents == 2 * 14900 + 12900
    assert cart.total_cents == cart.subtotal_cents
    assert cart.currency == "usd"


def test_split_lines_are_merged_before_the_quantity_limit():
    with pytest.raises(QuantityOutOfRange):
        price_cart([("tv-mount", 6), ("tv-mount", 5)], CATALOG)


def test_unknown_sku():
    with pytest.raises(UnknownSku):
        price_cart([("piano-tuning", 1)], CATALOG)


def test_email_normalisation():
    assert normalize_email("  Ana@Example.COM\t") == "ana@example.com"


skus = st.sampled_from(["tv-mount", "smart-lock", "ceiling-fan", "camera-4"])
carts = st.lists(st.tuples(skus, st.integers(1, 5)), min_size=1, max_size=8)


@given(carts, st.randoms())
def test_fingerprint_ignores_line_order(cart, rng):
    shuffled = list(cart)
    rng.shuffle(shuffled)
    assert cart_fingerprint(shuffled) == cart_fingerprint(cart)


@given(carts, st.data())
def test_fingerprint_ignores_line_splitting(cart, data):
    split = []
    for sku, qty in cart:
        if qty > 1:
            first = data.draw(st.integers(1, qty - 1))
            split += [(sku, first), (sku, qty - first)]
        else:
            split.append((sku, qty))
    assert cart_fingerprint(split) == cart_fingerprint(cart)


@given(carts, carts)
def test_different_carts_have_different_fingerprints(a, b):
    if merge_lines(a) != merge_lines(b):
        assert cart_fingerprint(a) != cart_fingerprint(b)
    else:
        assert cart_fingerprint(a) == cart_fingerprint(b)


# -- the service address in the booking key ----------------------------------------------

ADDRESS = {
    "line1": "1 Main St",
    "line2": None,
    "city": "Austin",
    "state": "TX",
    "postal_code": "78701",
    "country": "US",
}
spaces = st.lists(st.sampled_from([" ", "  ", "\t", "\u00a0"]), min_size=1, max_size=3).map("".join)
words = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#.,'-", min_size=1),
    min_size=1,
    max_size=4,
)


@given(words, spaces, spaces, spaces, st.booleans())
def test_address_ignores_case_and_surrounding_and_repeated_whitespace(
    parts, before, between, after, upper
):
    line1 = " ".join(parts)
    messy = before + between.join(p.upper() if upper else p.lower() for p in parts) + after
    country = "us" if upper else "US"
    tidy = normalize_address({**ADDRESS, "line1": line1})
    assert normalize_address({**ADDRESS, "line1": messy, "country": country}) == tidy


@given(words, words)
def test_every_other_difference_in_the_address_counts(a, b):
    first, second = " ".join(a), " ".join(b)
    same = first.lower() == second.lower()
    assert (
        normalize_address({**ADDRESS, "line1": first})
        == normalize_address({**ADDRESS, "line1": second})
    ) == same


def test_moving_text_between_fields_is_another_address():
    assert normalize_address({**ADDRESS, "line1": "1 Main St", "line2": "Apt 2"}) != (
        normalize_address({**ADDRESS, "line1": "1 Main St Apt", "line2": "2"})
    )
    assert normalize_address({**ADDRESS, "line2": ""}) == normalize_address(ADDRESS)


@given(words, words)
def test_the_booking_key_changes_with_the_address_only_when_the_address_does(a, b):
    fingerprint = cart_fingerprint([("tv-mount", 1)])
    first = normalize_address({**ADDRESS, "line1": " ".join(a)})
    second = normalize_address({**ADDRESS, "line1": " ".join(b)})
    same_key = derived_key("ana@example.com", fingerprint, first) == derived_key(
        "ana@example.com", fingerprint, second
    )
    assert same_key == (first == second)
