"""POST /api/checkout is answered below Litestar's router exactly as the route answers it:
a new checkout, a replay, and each error the flow decides; every request the fast path
does not answer reaches the route with its body as it was sent.

The route's answer to the same request is had from another app on the same database,
with the body sent in chunks and no Content-Length: the fast path reads only a whole body
of a known length, so such a request always goes to the route."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest

from support import app_client, checkout_body, comparable, delta, in_chunks, scrape

FAST = "h2s_checkout_fast_path_total"
JSON = {"Content-Type": "application/json"}
KEY = {"Idempotency-Key": "order-fast-1", **JSON}
OTHER_CART = [{"sku": "smart-lock", "quantity": 1}]


async def _by_route(client: httpx.AsyncClient, body: Any, headers: dict[str, str]):
    """``body`` (a JSON value, bytes or a stream) sent so that only the route can answer
    it: streamed, with no Content-Length."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    content = in_chunks(body) if isinstance(body, bytes) else body
    plain = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    return await client.post("/api/checkout", content=content, headers=plain)


async def _events(db, checkout_id: str) -> list[tuple[str, str | None]]:
    rows = await db.fetch(
        "select event, to_state from h2s_checkout_traces where checkout_id = $1 order by seq",
        uuid.UUID(checkout_id),
    )
    return [(r["event"], r["to_state"]) for r in rows]


def _shape(answer: httpx.Response) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A new checkout's answer with its ids and session replaced by their kind: two new
    checkouts answered alike agree on it."""
    body = answer.json()
    ids = {
        body["checkout_trace_id"]: "<checkout>",
        body["order_id"]: "<order>",
        body["job_id"]: "<job>",
        body["pay"]["session_id"]: "<session>",
    }
    pattern = re.compile("|".join(re.escape(i) for i in ids))

    def masked(value: str) -> str:
        return pattern.sub(lambda m: ids[m.group(0)], value)

    status, headers, _ = comparable(answer)
    return (
        status,
        {k: masked(v) for k, v in headers.items() if k != "content-length"},
        json.loads(masked(answer.text)),
    )


@pytest.mark.parametrize("headers", [JSON, KEY], ids=["derived key", "client key"])
async def test_a_new_checkout_is_answered_below_the_router_as_the_route_answers_it(
    client, db, settings, clock, headers
):
    before = await scrape(client)
    by_fast_path = await client.post(
        "/api/checkout", json=checkout_body("fast@example.com"), headers=headers
    )
    after = await scrape(client)
    async with app_client(settings, clock) as other:
        other_key = {**headers, "Idempotency-Key": "order-route-1"} if headers is KEY else headers
        by_route = await _by_route(other, checkout_body("route@example.com"), other_key)
        route_after = await scrape(other)

    assert by_fast_path.status_code == 201, by_fast_path.text
    assert _shape(by_fast_path) == _shape(by_route)
    assert by_fast_path.headers["location"].endswith(by_fast_path.json()["checkout_trace_id"])
    assert delta(before, after, FAST, result="answered") == 1
    assert delta(before, after, FAST, result="passed") == 0
    # The route's request was never read by the fast path (both apps count in one registry).
    assert delta(after, route_after, FAST, result="answered") == 0
    assert delta(after, route_after, FAST, result="passed") == 0
    for step in ((before, after), (after, route_after)):
        assert delta(*step, "h2s_checkout_requests_total", outcome="created") == 1
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
    # The same rows, the same timeline, whichever way the checkout came in.
    fast_id, route_id = (
        by_fast_path.json()["checkout_trace_id"],
        by_route.json()["checkout_trace_id"],
    )
    assert await _events(db, fast_id) == await _events(db, route_id)
    assert await db.fetchval("select count(*) from h2s_orders") == 2
    assert await db.fetchval("select count(*) from h2s_dispatch_jobs") == 2


@pytest.mark.parametrize("headers", [JSON, KEY], ids=["derived key", "client key"])
async def test_a_replay_is_answered_below_the_router_as_the_route_answers_it(
    client, db, settings, clock, headers
):
    first = await client.post("/api/checkout", json=checkout_body(), headers=headers)
    assert first.status_code == 201

    async with app_client(settings, clock) as other:
        before = await scrape(client)
        by_route = await _by_route(other, checkout_body(), headers)
        middle = await scrape(client)
        by_fast_path = await client.post("/api/checkout", json=checkout_body(), headers=headers)
        by_other_fast_path = await other.post(
            "/api/checkout", json=checkout_body(), headers=headers
        )
        after = await scrape(client)

    assert delta(before, middle, FAST, result="answered") == 0
    assert delta(before, middle, FAST, result="passed") == 0
    # The worker that made the checkout expects the retry; the other one does not, and
    # decides it in phase 1: the same answer.
    assert delta(middle, after, FAST, result="answered") == 2
    assert delta(middle, after, FAST, result="passed") == 0
    assert delta(before, after, "h2s_checkout_requests_total", outcome="replayed") == 3
    assert comparable(by_fast_path) == comparable(by_route) == comparable(by_other_fast_path)
    assert by_fast_path.headers["idempotent-replayed"] == "true"
    assert by_fast_path.headers["cache-control"] == "no-store"
    assert by_fast_path.headers["x-request-id"] != by_route.headers["x-request-id"]
    assert by_fast_path.json() == first.json()
    replayed = "select count(*) from h2s_checkout_traces where event = 'checkout.replayed'"
    assert await db.fetchval(replayed) == 3
    assert await db.fetchval("select count(*) from h2s_orders") == 1


async def test_each_error_the_flow_decides_is_answered_as_the_route_answers_it(
    db, stripe, settings, clock
):
    limited = settings.with_overrides(limit_checkouts_per_minute_email=1)
    bad_cart = checkout_body("cart@example.com", items=[{"sku": "no-such-service", "quantity": 1}])
    # The landlord's first home, then two more in the same minute: over the email's limit.
    homes = [checkout_body("landlord@example.com") for _ in range(3)]
    for n, home in enumerate(homes, start=1):
        home["customer"]["address"]["line1"] = f"{n} Main St"
    async with app_client(limited, clock) as fast, app_client(limited, clock) as other:
        made = await fast.post("/api/checkout", json=checkout_body(), headers=KEY)
        assert made.status_code == 201
        landlord = await fast.post("/api/checkout", json=homes[0])
        assert landlord.status_code == 201
        before = await scrape(fast)
        pairs = {
            "a cart with an unknown service": (
                await fast.post("/api/checkout", json=bad_cart),
                await _by_route(other, bad_cart, JSON),
            ),
            "the key with another cart": (
                await fast.post("/api/checkout", json=checkout_body(items=OTHER_CART), headers=KEY),
                await _by_route(other, checkout_body(items=OTHER_CART), KEY),
            ),
            "over the email's limit": (
                await fast.post("/api/checkout", json=homes[1]),
                await _by_route(other, homes[2], JSON),
            ),
        }
        after = await scrape(fast)

    statuses = {case: pair[0].status_code for case, pair in pairs.items()}
    assert statuses == {
        "a cart with an unknown service": 422,
        "the key with another cart": 422,
        "over the email's limit": 429,
    }
    for fast_answer, route_answer in pairs.values():
        assert comparable(fast_answer) == comparable(route_answer)
    # 3 answered here by the fast path, 3 by the other app's route (one registry).
    assert delta(before, after, FAST, result="answered") == 3
    assert delta(before, after, FAST, result="passed") == 0
    # Nothing written by any of them.
    assert await db.fetchval("select count(*) from h2s_orders") == 2


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
        "no Content-Length (streamed)": {"content": in_chunks(body), "headers": KEY},
        "in chunks with a Content-Length, another cart": {
            "content": in_chunks(json.dumps(checkout_body(items=OTHER_CART)).encode()),
            "headers": {
                **KEY,
                "Content-Length": str(len(json.dumps(checkout_body(items=OTHER_CART)))),
            },
        },
        "in chunks with a Content-Length, the same body": {
            "content": in_chunks(body),
            "headers": {**KEY, "Content-Length": str(len(body))},
        },
    }


ANSWERED = {
    "the key with another cart",
    "in chunks with a Content-Length, another cart",
    "in chunks with a Content-Length, the same body",
}


@pytest.mark.parametrize("case", list(_cases()))
async def test_what_the_fast_path_does_not_answer_the_route_answers_with_the_body_as_sent(
    client, db, settings, clock, case
):
    first = await client.post("/api/checkout", json=checkout_body(), headers=KEY)
    assert first.status_code == 201
    traces = await db.fetchval("select count(*) from h2s_checkout_traces")

    before = await scrape(client)
    here = await client.post("/api/checkout", **_cases()[case])
    after = await scrape(client)
    async with app_client(settings, clock) as other:
        there = _cases()[case]
        by_route = await _by_route(other, there["content"], there["headers"])

    assert comparable(here) == comparable(by_route)
    status = here.status_code
    # The cases with the body as sent and the same key ("the same body") are replays:
    # answered, by the fast path or the route; every other case writes nothing.
    replays = 2 if status == 201 else 0
    assert await db.fetchval("select count(*) from h2s_checkout_traces") == traces + replays
    # A whole JSON body with its length that decodes, with a key the route accepts, is
    # decided here: replayed, or refused as the route refuses a key reused with another cart.
    answered = case in ANSWERED
    assert delta(before, after, FAST, result="answered") == answered
    # Passed on after a look, or never looked at (another content type, no length).
    assert delta(before, after, FAST, result="passed") in ((0,) if answered else (0, 1))
