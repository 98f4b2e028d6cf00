"""The request screen's byte scans: JSON depth counted outside strings, NUL found as a byte,
as an escape and in a form, and nothing refused that a route may take."""

from __future__ import annotations

import json

import pytest

from h2s_checkout.api.request_screen import (
    DEPTH_MESSAGE,
    MAX_JSON_DEPTH,
    NUL_MESSAGE,
    body_refusal,
    json_depth,
    target_refusal,
)
from support import checkout_body

FORM = b"application/x-www-form-urlencoded"


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"", 0),
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["[[[[", "]]]]", "{{"]', 1),  # brackets inside strings do not count
        (b'["a\\"[[[", "\\\\"]', 1),  # an escaped quote does not end its string
        (b"[[[[", 4),  # unbalanced: what is open counts
        (b'["[[[', 1),  # an unterminated string runs to the end
        (b"[" + b'"\\"' * 1000 + b"[[", 1),  # however its quotes fall
        (nested(32_000), 32_000),
        (json.dumps(checkout_body()).encode(), 3),
    ],
)
def test_the_depth_is_counted_outside_strings(body, depth):
    assert json_depth(body) == depth


def test_a_body_as_deep_as_allowed_is_taken_and_one_deeper_is_refused():
    assert body_refusal(nested(MAX_JSON_DEPTH)) is None
    assert body_refusal(nested(MAX_JSON_DEPTH + 1)) == DEPTH_MESSAGE
    assert body_refusal(nested(32_000)) == DEPTH_MESSAGE
    # Many brackets side by side are not deep.
    assert body_refusal(b"[" + b"[],{}," * 5000 + b"1]") is None
    wide = {"items": [{"sku": "tv-mount", "quantity": 1}] * 500}
    assert body_refusal(json.dumps(wide).encode()) is None


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (b'{"name": "Ana\\u0000"}', True),
        (b'{"name": "\\\\\\u0000"}', True),  # a literal backslash, then the escape
        (b'{"name": "Ana\\\\u0000"}', False),  # a literal backslash, then text "u0000"
        (b'{"name": "\\u00001"}', True),
        (b'{"name": "\\u0001"}', False),  # other control characters are the schema's
        (b'{"name": "Ana\x00"}', True),  # a raw byte (not JSON at all)
        (b'{"url": "http://x/%00"}', False),  # in JSON, %00 is three characters
    ],
)
def test_a_nul_in_a_json_string_is_refused(body, refused):
    assert (body_refusal(body) == NUL_MESSAGE) is refused
    assert body_refusal(body) in (None, NUL_MESSAGE)


def test_a_nul_in_a_form_is_its_percent_escape():
    assert body_refusal(b"token=h2s_key_a%00b", FORM) == NUL_MESSAGE
    assert body_refusal(b"token=h2s_key_ab", FORM) is None
    # A form is not JSON: its brackets are not counted.
    assert body_refusal(b"token=" + b"%5B" * 100 + b"[" * 100, FORM) is None


def _scope(path: str = "/api/x", query: bytes = b"", **headers: bytes):
    return {"path": path, "query_string": query, "headers": list(headers.items())}


def test_a_nul_in_the_path_query_or_a_header_is_refused():
    assert target_refusal(_scope()) is None
    assert target_refusal(_scope(query=b"q=a%40b.co&x=%2500")) is None  # "%00" as text
    assert target_refusal(_scope(path="/api/checkouts/ORD-\x00")) == NUL_MESSAGE
    assert target_refusal(_scope(query=b"q=a%00@b.co")) == NUL_MESSAGE
    assert target_refusal(_scope(query=b"q=a\x00")) == NUL_MESSAGE
    assert target_refusal(_scope(**{"idempotency-key": b"k\x00"})) == NUL_MESSAGE


def test_the_depth_count_can_stop_at_the_first_slice_too_deep():
    body = nested(100_000)
    assert json_depth(body, stop_above=MAX_JSON_DEPTH) > MAX_JSON_DEPTH
    assert json_depth(body, stop_above=MAX_JSON_DEPTH) < 100_000  # stopped early
    assert json_depth(body) == 100_000
    # Without the count, a body's NULs are still found.
    assert body_refusal(body, count_depth=False) is None
    assert body_refusal(b'["\\u0000"]', count_depth=False) == NUL_MESSAGE
