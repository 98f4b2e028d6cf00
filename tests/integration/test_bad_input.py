"""Bad input gets a 4xx with a stable code and leaves every table as it was."""

from __future__ import annotations

import copy
import json
import re

import pytest
import stripe as stripe_sdk
from litestar.routes import HTTPRoute

from h2s_checkout.app import create_app
from h2s_checkout.settings import Settings
from support import WEBHOOK_SECRET, checkout_body, in_chunks, signed, table_counts


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


# -- what no route can take: NUL anywhere, JSON nested too deep --------------------------------
# Walked over the app's own route table, so a route added later is covered by its presence.

_PARAM = re.compile(r"\{(\w+):\w+\}")
WEBHOOK = "/api/stripe/webhook"
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _route_table() -> list[tuple[str, str]]:
    """(method, path template) of every route but OPTIONS, from the app itself."""
    app = create_app(Settings(database_url="postgresql://routes-only/unused"))
    return sorted(
        (method, route.path)
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        for method in handler.http_methods - {"OPTIONS"}
    )


ROUTES = _route_table()
WITH_PATH_PARAMS = [(m, p) for m, p in ROUTES if _PARAM.search(p)]
TAKING_BODIES = [(m, p) for m, p in ROUTES if m in _BODY_METHODS]
DEEP = b"[" * 32_000 + b"]" * 32_000
BAD_BODIES = {
    "32,000 nested arrays": (DEEP, "application/json"),
    "32,000 nested arrays as text/plain": (DEEP, "text/plain"),
    "65 nested objects": (b'{"a":' * 65 + b"1" + b"}" * 65, "application/json"),
    "a \\u0000 in a string": (
        json.dumps({**checkout_body(name="Ana\u0000"), "reason": "other\u0000"}).encode(),
        "application/json",
    ),
    "a NUL in a form": (b"token=h2s_key_%00", "application/x-www-form-urlencoded"),
}


def _ids(routes: list[tuple[str, str]]) -> list:
    return [pytest.param(m, p, id=f"{m} {p}") for m, p in routes]


def _url(path: str, value: str = "ORD-%00") -> str:
    return _PARAM.sub(value, path)


def test_the_route_table_is_walked():
    # A walk of nothing would pass: the routes the issue named are in it.
    assert ("POST", "/api/checkout") in TAKING_BODIES
    assert ("POST", "/api/stripe/webhook") in TAKING_BODIES
    assert ("DELETE", "/api/event-endpoints/{endpoint_id:str}") in WITH_PATH_PARAMS
    assert ("GET", "/debug/checkouts/{ref:str}") in WITH_PATH_PARAMS


@pytest.mark.parametrize(("method", "path"), _ids(WITH_PATH_PARAMS))
async def test_a_nul_in_a_path_parameter_is_a_400(client, db, admin, method, path):
    before = await table_counts(db)

    answer = await client.request(method, _url(path), headers=admin)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"
    assert await table_counts(db) == before


@pytest.mark.parametrize(("method", "path"), _ids(ROUTES))
async def test_a_nul_in_the_query_or_a_header_is_a_400(client, db, admin, method, path):
    url = _url(path, "ORD-0000000000000000")
    answers = {
        "query": await client.request(method, f"{url}?q=a%00@b.co", headers=admin),
        "header": await client.request(method, url, headers={**admin, "Idempotency-Key": "k\0"}),
    }

    for where, answer in answers.items():
        assert answer.status_code == 400, (where, answer.text)
        assert answer.json()["error"]["code"] == "invalid_request", where


@pytest.mark.parametrize("case", list(BAD_BODIES))
@pytest.mark.parametrize(("method", "path"), _ids(TAKING_BODIES))
async def test_a_body_no_route_can_take_is_a_400_through_either_door(
    client, db, stripe, admin, method, path, case
):
    """With its length (the checkout fast path reads it) and streamed (only the route
    does), signed as Stripe signs, with a key and without: always the same 400."""
    content, content_type = BAD_BODIES[case]
    before = await table_counts(db)
    url = _url(path, "ORD-0000000000000000")
    stripe_signature = signed({})[1]["Stripe-Signature"]
    headers = {"Stripe-Signature": stripe_signature, **admin, "Content-Type": content_type}

    answers = [
        await client.request(method, url, content=content, headers=headers),
        await client.request(method, url, content=in_chunks(content), headers=headers),
        await client.request(method, url, content=content, headers={"Content-Type": content_type}),
    ]

    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_request"
    assert await table_counts(db) == before
    assert stripe.requests == []


async def test_a_webhook_body_larger_than_any_other_route_takes_is_screened_too(client, db):
    """Only the webhook takes more than H2S_MAX_BODY_BYTES (up to 1 MiB): a NUL in such a
    body is refused before it is read, and a deep one, signed or not, is a 400, never a
    500 (its depth is counted once the signature says Stripe sent it)."""
    deep = "[" * 100_000 + "]" * 100_000
    nul = '{"a": "\\u0000"}' + " " * 100_000

    def as_stripe_signs(content: str) -> dict[str, str]:
        header = stripe_sdk.WebhookSignature.generate_signature_header(content, WEBHOOK_SECRET)
        return {"Stripe-Signature": header, "content-type": "application/json"}

    answers = {
        "a NUL": await client.post(WEBHOOK, content=nul, headers=as_stripe_signs(nul)),
        "deep, unsigned": await client.post(
            WEBHOOK, content=deep, headers=as_stripe_signs("something else")
        ),
        "deep, signed": await client.post(WEBHOOK, content=deep, headers=as_stripe_signs(deep)),
    }

    codes = {case: (a.status_code, a.json()["error"]["code"]) for case, a in answers.items()}
    assert codes == {
        "a NUL": (400, "invalid_request"),
        "deep, unsigned": (400, "invalid_signature"),
        "deep, signed": (400, "invalid_signature"),
    }
    assert await db.fetchval("select count(*) from h2s_webhook_events") == 0
