"""Limits on POST /api/checkout: 429 rate_limited with Retry-After, nothing written, replays
never refused, the client's address taken from X-Forwarded-For only behind a trusted proxy."""

from __future__ import annotations

import pytest

from support import app_client, checkout_body, table_counts


def limited(settings, **changes):
    return settings.with_overrides(
        limit_checkouts_per_minute_ip=2, limit_checkouts_per_minute_email=0, **changes
    )


async def post(client, email: str, **headers: str):
    return await client.post("/api/checkout", json=checkout_body(email=email), headers=headers)


async def test_over_the_limit_is_a_429_with_retry_after_and_nothing_written(
    settings, db, stripe, clock
):
    async with app_client(limited(settings), clock) as client:
        assert (await post(client, "a@example.com")).status_code == 201
        assert (await post(client, "b@example.com")).status_code == 201
        before = await table_counts(db)
        sessions = len(stripe.sessions)

        refused = await post(client, "c@example.com")

    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["ok"] is False
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["limited_by"] == "address"
    assert "checkout_trace_id" not in refused.json()
    assert await table_counts(db) == before
    assert len(stripe.sessions) == sessions


async def test_a_replay_is_never_refused(settings, db, stripe, clock):
    async with app_client(limited(settings), clock) as client:
        first = await post(client, "a@example.com")
        await post(client, "b@example.com")
        assert (await post(client, "c@example.com")).status_code == 429

        again = await post(client, "a@example.com")
        keyed = await client.post(
            "/api/checkout",
            json=checkout_body(email="d@example.com"),
            headers={"Idempotency-Key": "k-1"},
        )

    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert keyed.status_code == 429  # a new checkout, whatever its key


async def test_the_email_limit_holds_whatever_the_address(settings, db, stripe, clock):
    changed = settings.with_overrides(
        limit_checkouts_per_minute_email=1, trusted_proxies=("127.0.0.1/32",)
    )
    async with app_client(changed, clock) as client:
        first = await client.post(
            "/api/checkout",
            json=checkout_body(email="Ana@Example.com"),
            headers={"X-Forwarded-For": "198.51.100.1"},
        )
        other_cart = checkout_body(
            email="ana@example.com", items=[{"sku": "tv-mount", "quantity": 2}]
        )
        second = await client.post(
            "/api/checkout", json=other_cart, headers={"X-Forwarded-For": "198.51.100.2"}
        )

    assert first.status_code == 201
    assert second.status_code == 429
    assert second.json()["error"]["limited_by"] == "email"


@pytest.mark.parametrize(
    ("trusted", "separate"),
    [(("127.0.0.1/32",), True), ((), False), (("10.0.0.0/8",), False)],
    ids=["peer_trusted", "no_proxy_trusted", "other_proxy_trusted"],
)
async def test_forwarded_addresses_count_only_behind_a_trusted_proxy(
    settings, db, stripe, clock, trusted, separate
):
    async with app_client(limited(settings, trusted_proxies=trusted), clock) as client:
        for n in range(2):
            assert (
                await post(client, f"a{n}@example.com", **{"X-Forwarded-For": "203.0.113.1"})
            ).status_code == 201
        other_client = await post(client, "b@example.com", **{"X-Forwarded-For": "203.0.113.2"})

    assert other_client.status_code == (201 if separate else 429)
