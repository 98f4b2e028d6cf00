"""Exact prices cost the hot path nothing: a new checkout is still two round trips, a
replay one, counted by pg_stat_statements as the bench counts them."""

from __future__ import annotations

import pytest

from h2s_bench import dbstats
from h2s_checkout.store.embedded import has_pg_stat_statements
from support import checkout_body

pytestmark = pytest.mark.skipif(
    not has_pg_stat_statements(), reason="this PostgreSQL has no pg_stat_statements"
)
CHECKOUTS = 12


async def test_new_checkouts_are_two_round_trips_and_replays_one(client, db, database_url):
    await db.execute("create extension if not exists pg_stat_statements")
    # Warm: the catalog and the area cached, the pool's connection open.
    assert (await client.post("/api/checkout", json=checkout_body())).status_code == 201

    before = await dbstats.snapshot(database_url)
    for n in range(CHECKOUTS):
        answer = await client.post("/api/checkout", json=checkout_body(email=f"rt{n}@example.com"))
        assert answer.status_code == 201, answer.text
    middle = await dbstats.snapshot(database_url)
    for n in range(CHECKOUTS):
        answer = await client.post("/api/checkout", json=checkout_body(email=f"rt{n}@example.com"))
        assert answer.headers.get("idempotent-replayed") == "true"
    after = await dbstats.snapshot(database_url)

    new = dbstats.delta(before, middle, CHECKOUTS)
    replays = dbstats.delta(middle, after, CHECKOUTS)
    assert new.round_trips == pytest.approx(2.0), new.by_statement
    assert replays.round_trips == pytest.approx(1.0), replays.by_statement
