"""A storefront's own server checks out for its customers with a key holding the checkout
scope: limited per key and per email instead of per its one address, while anonymous
callers stay limited per address; a bad key is refused, never quietly anonymous.

Each case goes in both ways: with a Content-Length (the checkout fast path answers it) and
streamed without one (only the route can), as tests/integration/test_checkout_fast_path.py
does."""

from __future__ import annotations

import json
import uuid

import pytest

from h2s_checkout.flows.api_keys import CACHE_TTL
from support import (
    ADMIN_TOKEN,
    app_client,
    checkout_body,
    comparable,
    delta,
    in_chunks,
    scrape,
    table_counts,
)

DOORS = ["fast path", "route"]


def limited(settings, **changes):
    """The shipped limits (the test settings turn them off), with ``changes``."""
    shipped = {
        "limit_checkouts_per_minute_ip": 30,
        "limit_checkouts_per_minute_email": 10,
        "limit_checkouts_per_minute_key": 600,
    }
    return settings.with_overrides(**(shipped | changes))


async def post(client, door: str, body: dict, key: str | None = None, **headers: str):
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    content = json.dumps(body).encode()
    headers["Content-Type"] = "application/json"
    if door == "route":
        return await client.post("/api/checkout", content=in_chunks(content), headers=headers)
    return await client.post("/api/checkout", content=content, headers=headers)


async def make_key(client, name: str, *scopes: str) -> str:
    answer = await client.post(
        "/api/keys",
        json={"name": name, "scopes": list(scopes)},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["key"]


@pytest.mark.parametrize("door", DOORS)
async def test_a_storefronts_server_makes_100_checkouts_in_a_minute_from_one_address(
    settings, db, stripe, clock, door
):
    async with app_client(limited(settings), clock) as client:
        key = await make_key(client, "shop-frontend", "checkout")
        before = await scrape(client)

        answers = [
            await post(client, door, checkout_body(f"customer{n}@example.com"), key)
            for n in range(100)
        ]
        flood = [
            await post(client, door, checkout_body(f"someone{n}@example.com")) for n in range(31)
        ]
        after = await scrape(client)

    # The door each went in by (the fast path answers every one it is sent).
    answered = delta(before, after, "h2s_checkout_fast_path_total", result="answered")
    assert answered == (131 if door == "fast path" else 0)

    assert [a.status_code for a in answers] == [201] * 100
    # Anonymous callers from the same address are still limited per address.
    assert [a.status_code for a in flood] == [201] * 30 + [429]
    assert flood[-1].json()["error"]["limited_by"] == "address"
    assert await db.fetchval("select count(*) from h2s_orders") == 130
    # Every row the storefront's requests wrote says who acted: the key's name (the one
    # step phase 1's function composes from its own values, order_and_job.created, names
    # the rows it made instead).
    actors = await db.fetch(
        "select t.event, array_agg(distinct t.detail->>'actor') as actors"
        " from h2s_checkout_traces t join h2s_orders o on o.checkout_id = t.checkout_id"
        " where o.customer->>'email' like 'customer%' and t.event <> 'order_and_job.created'"
        " group by t.event order by t.event"
    )
    assert {r["event"]: r["actors"] for r in actors} == {
        "checkout.received": ["shop-frontend"],
        "create_session": ["shop-frontend"],
        "queue_job": ["shop-frontend"],
        "stripe.session_created": ["shop-frontend"],
    }
    anonymous = await db.fetchval(
        "select count(*) from h2s_checkout_traces t join h2s_orders o"
        " on o.checkout_id = t.checkout_id where o.customer->>'email' like 'someone%'"
        " and t.detail ? 'actor'"
    )
    assert anonymous == 0


@pytest.mark.parametrize("door", DOORS)
async def test_the_key_has_a_limit_of_its_own_and_the_email_limit_still_holds(
    settings, db, stripe, clock, door
):
    changed = limited(
        settings,
        limit_checkouts_per_minute_ip=2,
        limit_checkouts_per_minute_key=3,
        limit_checkouts_per_minute_email=1,
    )
    async with app_client(changed, clock) as client:
        key = await make_key(client, "shop-frontend", "checkout")
        by_key = [
            await post(client, door, checkout_body(f"c{n}@example.com"), key) for n in range(4)
        ]
        # Its address's own bucket is untouched by the key's checkouts, and the other way.
        anonymous = [await post(client, door, checkout_body(f"a{n}@example.com")) for n in range(3)]
        second_home = checkout_body("c0@example.com")
        second_home["customer"]["address"]["line1"] = "2 Main St"
        same_email = await post(client, door, second_home, key)
        clock.advance(minutes=1)
        next_minute = await post(client, door, checkout_body("c9@example.com"), key)

    assert [a.status_code for a in by_key] == [201, 201, 201, 429]
    assert by_key[-1].json()["error"]["limited_by"] == "key"
    assert 1 <= int(by_key[-1].headers["retry-after"]) <= 60
    assert [a.status_code for a in anonymous] == [201, 201, 429]
    assert same_email.status_code == 429
    assert same_email.json()["error"]["limited_by"] == "email"
    assert next_minute.status_code == 201


@pytest.mark.parametrize("door", DOORS)
async def test_a_key_that_is_not_good_for_checkout_is_refused_not_made_anonymous(
    settings, db, stripe, clock, door
):
    async with app_client(limited(settings), clock) as client:
        reader = await make_key(client, "dashboard", "read")
        revoked = await make_key(client, "old-frontend", "checkout")
        key_id = await db.fetchval("select key_id from h2s_api_keys where name = 'old-frontend'")
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert (await client.delete(f"/api/keys/{key_id}", headers=admin)).status_code == 200
        before = await table_counts(db)

        answers = {
            "unknown key": await post(client, door, checkout_body(), "h2s_key_" + "Z" * 43),
            "revoked key": await post(client, door, checkout_body(), revoked),
            "not a bearer": await post(
                client, door, checkout_body(), None, Authorization=f"Basic {reader}"
            ),
            "a key without the scope": await post(client, door, checkout_body(), reader),
        }
        # Refused before its body is read, as any guarded route refuses.
        broken = await post(client, door, {"customer": 1}, reader)

    statuses = {case: answer.status_code for case, answer in answers.items()}
    assert statuses == {
        "unknown key": 401,
        "revoked key": 401,
        "not a bearer": 401,
        "a key without the scope": 403,
    }
    assert answers["a key without the scope"].json()["error"]["code"] == "forbidden"
    assert answers["unknown key"].json()["error"]["code"] == "unauthorized"
    assert broken.status_code == 403
    assert await table_counts(db) == before
    assert stripe.requests == []


async def test_each_refusal_is_answered_alike_through_both_doors(settings, db, stripe, clock):
    async with app_client(limited(settings, limit_checkouts_per_minute_key=1), clock) as client:
        reader = await make_key(client, "dashboard", "read")
        key = await make_key(client, "shop-frontend", "checkout")
        assert (
            await post(client, "fast path", checkout_body("a@example.com"), key)
        ).status_code == 201
        pairs = [
            [await post(client, door, checkout_body(), "h2s_key_" + "Z" * 43) for door in DOORS],
            [await post(client, door, checkout_body(), reader) for door in DOORS],
            [
                await post(client, door, checkout_body(f"{door[0]}@example.com"), key)
                for door in DOORS
            ],
        ]

    for fast, route in pairs:
        assert comparable(fast, "retry-after") == comparable(route, "retry-after")
    assert [pair[0].status_code for pair in pairs] == [401, 403, 429]


@pytest.mark.parametrize("door", DOORS)
async def test_the_key_is_found_in_the_replicas_cache_without_a_lookup_per_checkout(
    settings, db, stripe, clock, door
):
    """Revoked behind the replica's back (straight in the database), the key still works
    until the cache's entry expires: the checkouts in between never looked it up."""
    async with app_client(limited(settings), clock) as client:
        key = await make_key(client, "shop-frontend", "checkout")
        first = await post(client, door, checkout_body("a@example.com"), key)
        await db.execute("update h2s_api_keys set revoked_at = now()")
        cached = await post(client, door, checkout_body("b@example.com"), key)
        clock.advance(seconds=CACHE_TTL.total_seconds())
        looked_up = await post(client, door, checkout_body("c@example.com"), key)

    assert (first.status_code, cached.status_code, looked_up.status_code) == (201, 201, 401)
    actor = await db.fetchval(
        "select detail->>'actor' from h2s_checkout_traces where checkout_id = $1 limit 1",
        uuid.UUID(cached.json()["checkout_trace_id"]),
    )
    assert actor == "shop-frontend"
