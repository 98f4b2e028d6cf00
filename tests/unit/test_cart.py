"""Pricing from the catalog, email normalisation and the cart fingerprint."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2s_checkout.domain.cart import (
    CatalogItem,
    cart_fingerprint,
    merge_lines,
    normalize_email,
    price_cart,
)
from h2s_checkout.domain.errors import QuantityOutOfRange, UnknownSku

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
