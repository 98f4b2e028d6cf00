"""Phase slots: at most H2S_CHECKOUT_PHASE_SLOTS checkouts of a worker are in their database
phases at once, the others wait their turn, and a slot comes back whatever happens.

The checkouts are one customer's, each for another home (a landlord's), and a transaction
of the test's holds that customer's recipient row: phase 1 of every admitted checkout waits
for it inside PostgreSQL, where pg_stat_activity shows how many were let in."""

from __future__ import annotations

import asyncio

import asyncpg

from support import app_client, checkout_body, most_waiting_for

EMAIL = "landlord@example.com"


async def _admitted_while_held(database_url: str, client, bodies: list[dict]) -> tuple[int, list]:
    """Send ``bodies`` at once while the customer's recipient row is held; how many reached
    phase 1 in the database, then every answer once the row is let go."""
    holder = await asyncpg.connect(database_url)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(
            "insert into h2s_recipients (email_normalized, email, name) values ($1, $1, 'Ana')",
            EMAIL,
        )
        sends = [asyncio.create_task(client.post("/api/checkout", json=b)) for b in bodies]
        # until the admitted ones are all waiting, then a while more
        seen = await most_waiting_for(holder, polls=100)
        await tx.rollback()
        answers = await asyncio.wait_for(asyncio.gather(*sends), timeout=30)
    finally:
        await holder.close()
    return seen, answers


def _bodies(n: int) -> list[dict]:
    """One customer's checkouts of the same service for ``n`` homes: each is a booking."""
    bodies = []
    for i in range(n):
        body = checkout_body(email=EMAIL)
        body["customer"]["address"]["line1"] = f"{i + 1} Main St"
        bodies.append(body)
    return bodies


async def test_only_the_slots_count_of_checkouts_reach_the_database_and_the_rest_follow(
    db, stripe, settings, clock, database_url
):
    async with app_client(settings.with_overrides(checkout_phase_slots=2), clock) as client:
        seen, answers = await _admitted_while_held(database_url, client, _bodies(6))

    assert seen == 2
    assert [a.status_code for a in answers] == [201] * 6
    assert await db.fetchval("select count(*) from h2s_orders") == 6
    assert await db.fetchval("select count(*) from h2s_dispatch_jobs") == 6


async def test_with_more_slots_than_checkouts_all_of_them_reach_the_database(
    db, stripe, settings, clock, database_url
):
    roomy = settings.with_overrides(checkout_phase_slots=10, db_pool_max=10)
    async with app_client(roomy, clock) as client:
        seen, answers = await _admitted_while_held(database_url, client, _bodies(6))

    assert seen == 6
    assert [a.status_code for a in answers] == [201] * 6


async def test_a_slot_comes_back_after_a_refused_cart_and_a_failed_session(
    db, stripe, settings, clock
):
    stripe.faults.add("status", "POST /v1/checkout/sessions", status=400, times=1)
    async with app_client(settings.with_overrides(checkout_phase_slots=1), clock) as client:
        bad_cart = checkout_body(email="bad@example.com")
        bad_cart["items"] = [{"sku": "no-such-service", "quantity": 1}]
        refused = await asyncio.wait_for(client.post("/api/checkout", json=bad_cart), 10)
        failed = await asyncio.wait_for(client.post("/api/checkout", json=checkout_body()), 10)
        made = await asyncio.wait_for(
            client.post("/api/checkout", json=checkout_body(email="later@example.com")), 10
        )

    assert refused.status_code == 422
    assert failed.status_code == 502
    assert made.status_code == 201
