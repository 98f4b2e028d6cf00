"""Bad input gets a 4xx with a stable code and leaves every table as it was."""

from __future__ import annotations

import copy

import pytest

from support import checkout_body, table_counts


def body_with(path: str, value: object) -> dict:
    body = copy.deepcopy(checkout_body())
    target = body
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is KeyError:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return body


CASES = {
    "unknown_sku": (
        body_with("items", [{"sku": "no-such-thing", "quantity": 1}]),
        422,
        "unknown_sku",
    ),
    "quantity_zero": (body_with("items.0.quantity", 0), 400, "invalid_request"),
    "quantity_negative": (body_with("items.0.quantity", -3), 400, "invalid_request"),
    "quantity_above_catalog_max": (
        body_with("items", [{"sku": "camera-4", "quantity": 6}]),
        422,
        "quantity_out_of_range",
    ),
    "quantity_huge": (body_with("items.0.quantity", 10**9), 400, "invalid_request"),
    "malformed_email": (body_with("customer.email", "ana-at-example"), 400, "invalid_request"),
    "missing_customer": (body_with("customer", KeyError), 400, "invalid_request"),
    "missing_items": (body_with("items", KeyError), 400, "invalid_request"),
    "empty_items": (body_with("items", []), 400, "invalid_request"),
    "wrong_type_quantity": (body_with("items.0.quantity", "two"), 400, "invalid_request"),
    "wrong_type_items": (body_with("items", "tv-mount"), 400, "invalid_request"),
    "client_sent_price": (
        body_with("items", [{"sku": "tv-mount", "quantity": 1, "unit_amount": 1}]),
        400,
        "invalid_request",
    ),
    "unknown_field": (body_with("customer.coupon", "FREE"), 400, "invalid_request"),
    "control_characters": (body_with("customer.name", "Ana\x00\x1b[2J"), 400, "invalid_request"),
    "country_not_iso": (body_with("customer.address.country", "USA"), 400, "invalid_request"),
    "phone_letters": (body_with("customer.phone", "call me"), 400, "invalid_request"),
    "name_too_long": (body_with("customer.name", "A" * 201), 400, "invalid_request"),
}


@pytest.mark.parametrize(("body", "status", "code"), CASES.values(), ids=CASES.keys())
async def test_bad_input_is_refused_and_writes_nothing(client, db, stripe, body, status, code):
    before = await table_counts(db)

    answer = await client.post("/api/checkout", json=body)

    assert answer.status_code == status, answer.text
    assert answer.json()["ok"] is False
    assert answer.json()["error"]["code"] == code
    assert answer.headers["cache-control"] == "no-store"
    assert await table_counts(db) == before
    assert stripe.requests == []


async def test_not_json_is_refused(client, db, stripe):
    before = await table_counts(db)
    answer = await client.post(
        "/api/checkout", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"
    assert await table_counts(db) == before


async def test_oversized_body_is_refused(client, db, stripe):
    before = await table_counts(db)
    body = checkout_body()
    body["customer"]["name"] = "A" * (70 * 1024)
    answer = await client.post("/api/checkout", json=body)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert await table_counts(db) == before


async def test_validation_errors_name_the_field(client):
    answer = await client.post("/api/checkout", json=body_with("customer.email", "nope"))
    fields = answer.json()["error"]["fields"]
    assert any("email" in (f["field"] or "") or "email" in (f["message"] or "") for f in fields)
