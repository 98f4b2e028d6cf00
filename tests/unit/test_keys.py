"""The request digest: the same bytes as the digests already stored, whatever the body."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from h2s_checkout.domain.keys import request_digest


def stored_digest(body: object) -> str:
    """How every digest stored before 2026-11-28 was made: a stored checkout or
    cancellation is only replayed while the digest of its retry matches this one."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# What a body can hold once msgspec has checked it against the API's structs: strings
# (any code point but a lone surrogate, which JSON decoding refuses), integers, booleans,
# null, lists and objects. No floats: no request schema has one.
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=500)
@given(st.dictionaries(_text, _json_values, max_size=6))
def test_the_digest_is_the_stored_digest_for_any_body(body):
    assert request_digest(body) == stored_digest(body)


def test_the_digest_of_a_checkout_body_is_pinned():
    body = {
        "items": [{"quantity": 2, "sku": "tv-mount"}],
        "customer": {
            "email": "ana@example.com",
            "name": "Ana Müller \u2028 \x7f \U0001f600",
            "phone": None,
            "address": {"line1": "1 Main St", "city": "Austin", "country": "US"},
        },
    }
    reordered = {"customer": body["customer"], "items": body["items"]}
    assert request_digest(body) == request_digest(reordered) == stored_digest(body)
    assert request_digest(body) != request_digest({**body, "items": []})
