"""Replays this worker expects are answered below Litestar's router, exactly as the route
answers them (the errors it decides too); every other request reaches the route with its
body as it was sent.

Each case is sent twice: to the worker that made the checkout (it expects the replay, so
the fast path looks at the request) and to another app on the same database (it has not
answered the key, so its route decides). The two answers must be the same."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from support import app_client, checkout_body, comparable, delta, scrape

FAST = "h2s_replay_fast_path_total"
KEY = {"Idempotency-Key": "order-fast-1", "Content-Type": "application/json"}
OTHER_CART = [{"sku": "smart-lock", "quantity": 1}]


async def _replayed_rows(db) -> int:
    return await db.fetchval(
        "select count(*) from h2s_checkout_traces where event = 'checkout.replayed'"
    )


@pytest.mark.parametrize("headers", [{}, KEY], ids=["derived key", "client key"])
async def test_an_expected_replay_is_answered_below_the_router_as_the_route_answers_it(
    client, db, settings, clock, headers
):
    first = await client.post("/api/checkout", json=checkout_body(), headers=headers)
    assert first.status_code == 201

    async with app_client(settings, clock) as other:
        before = await scrape(client)
        by_route = await other.post("/api/checkout", json=checkout_body(), headers=headers)
        middle = await scrape(client)
        by_fast_path = await client.post("/api/checkout", json=checkout_body(), headers=headers)
        after = await scrape(client)

    # Both apps count in this process's one registry: each step is read on its own.
    assert delta(before, middle, FAST, result="passed") == 1
    assert delta(before, middle, FAST, result="answered") == 0
    assert delta(middle, after, FAST, result="answered") == 1
    assert delta(middle, after, FAST, result="passed") == 0
    for step in ((before, middle), (middle, after)):
        assert delta(*step, "h2s_checkout_requests_total", outcome="replayed") == 1
        assert (
            delta(
                *step,
                "h2s_http_requests_total",
                method="POST",
                path="/api/checkout",
                status_code="201",
            )
            == 1
        )
    assert comparable(by_fast_path) == comparable(by_route)
    assert by_fast_path.headers["idempotent-replayed"] == "true"
    assert by_fast_path.headers["cache-control"] == "no-store"
    assert by_fast_path.headers["x-request-id"] != by_route.headers["x-request-id"]
    assert by_fast_path.json() == first.json()
    assert await _replayed_rows(db) == 2


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 40):
        yield body[i : i + 40]


ANSWERED = {
    "the key with another cart",
    "in chunks with a Content-Length, another cart",
    "in chunks with a Content-Length, the same body",
}


def _cases() -> dict[str, dict[str, Any]]:
    body = json.dumps(checkout_body()).encode()
    return {
        "the key with another cart": {
            "content": json.dumps(checkout_body(items=OTHER_CART)).encode(),
            "headers": KEY,
        },
        "broken JSON": {"content": body[:-5], "headers": KEY},
        "an unknown field": {
            "content": json.dumps({**checkout_body(), "coupon": "X"}).encode(),
            "headers": KEY,
        },
        "a key too long for the route": {
            "content": body,
            "headers": {**KEY, "Idempotency-Key": "k" * 256},
        },
        "a text content type": {"content": body, "headers": {**KEY, "Content-Type": "text/plain"}},
        "a body over the limit": {"content": body + b" " * 70_000, "headers": KEY},
        "no Content-Length (streamed)": {"content": _chunks(body), "headers": KEY},
        "in chunks with a Content-Length, another cart": {
            "content": _chunks(json.dumps(checkout_body(items=OTHER_CART)).encode()),
            "headers": {
                **KEY,
                "Content-Length": str(len(json.dumps(checkout_body(items=OTHER_CART)))),
            },
        },
        "in chunks with a Content-Length, the same body": {
            "content": _chunks(body),
            "headers": {**KEY, "Content-Length": str(len(body))},
        },
    }


@pytest.mark.parametrize("case", list(_cases()))
async def test_what_the_fast_path_does_not_answer_the_route_answers_with_the_body_as_sent(
    client, db, settings, clock, case
):
    first = await client.post("/api/checkout", json=checkout_body(), headers=KEY)
    assert first.status_code == 201
    traces = await db.fetchval("select count(*) from h2s_checkout_traces")

    here_request = _cases()[case]
    before = await scrape(client)
    here = await client.post("/api/checkout", **here_request)
    after = await scrape(client)
    async with app_client(settings, clock) as other:
        there = await other.post("/api/checkout", **_cases()[case])

    assert comparable(here) == comparable(there)
    status = here.status_code
    # The cases with the body as sent and the same key ("the same body") are replays:
    # answered, by the fast path or the route; every other case writes nothing.
    replays = 2 if status == 201 else 0
    assert await db.fetchval("select count(*) from h2s_checkout_traces") == traces + replays
    # A whole JSON body with its length, with the key this worker answered, is decided
    # here: replayed, or refused as the route refuses a key reused with another cart.
    answered = case in ANSWERED
    assert delta(before, after, FAST, result="answered") == answered
    # Passed on after a look, or never looked at (another content type, no length).
    assert delta(before, after, FAST, result="passed") in ((0,) if answered else (0, 1))
