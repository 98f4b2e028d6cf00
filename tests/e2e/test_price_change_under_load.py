"""A price changed on one process while another is under load: no order is charged at a
price that was not current when its phase 1 committed, and order, Stripe line items and
price always agree."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import pytest

from support import ADMIN_TOKEN, checkout_body

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHANGES = 4
SHOPPERS = 8


async def test_no_checkout_after_a_price_change_committed_is_charged_the_old_price(
    servers, db, stripe
):
    env = {"H2S_RECONCILE_INTERVAL_S": "0"}
    loaded, staff = servers(**env), servers(**env)
    serial = itertools.count()
    # (monotonic time the request was sent, its answer)
    booked: list[tuple[float, httpx.Response]] = []
    # (monotonic time the PATCH answered, i.e. after its commit, the version it made)
    committed: list[tuple[float, int]] = []
    done = asyncio.Event()

    async with httpx.AsyncClient(timeout=60) as http:

        async def shopper() -> None:
            while not done.is_set():
                n = next(serial)
                sent = time.monotonic()
                answer = await http.post(
                    f"{loaded.url}/api/checkout",
                    json=checkout_body(email=f"load{n}@example.com"),
                )
                booked.append((sent, answer))

        async def change_prices() -> None:
            await asyncio.sleep(0.5)  # the loaded process has its catalog cached by now
            for step in range(1, CHANGES + 1):
                item = await http.get(f"{staff.url}/api/catalog/items/tv-mount", headers=ADMIN)
                patched = await http.patch(
                    f"{staff.url}/api/catalog/items/tv-mount",
                    json={"unit_amount_cents": 14900 + 100 * step},
                    headers={**ADMIN, "If-Match": item.headers["etag"]},
                )
                assert patched.status_code == 200, patched.text
                committed.append((time.monotonic(), patched.json()["version"]))
                await asyncio.sleep(0.4)
            await asyncio.sleep(0.5)
            done.set()

        await asyncio.gather(change_prices(), *(shopper() for _ in range(SHOPPERS)))

    history = await db.fetch(
        "select version, after from h2s_catalog_history where sku = 'tv-mount'"
    )
    price_of = {1: 14900} | {h["version"]: h["after"]["unit_amount_cents"] for h in history}
    assert sorted(price_of) == list(range(1, CHANGES + 2))
    created = [(sent, a.json()) for sent, a in booked if a.status_code == 201]
    assert len(created) == len(booked), [a.text for _, a in booked if a.status_code != 201][:3]
    versions_seen = set()
    for sent, body in created:
        order = await db.fetchrow(
            "select total_cents, items from h2s_orders where order_id = $1", body["order_id"]
        )
        [line] = order["items"]
        version = line["catalog_version"]
        versions_seen.add(version)
        # The order's price is its version's, and Stripe was asked for the same.
        assert line["unit_amount_cents"] == price_of[version] == order["total_cents"]
        session_lines = stripe.line_items(body["pay"]["session_id"])
        assert [s["price"]["unit_amount"] for s in session_lines] == [price_of[version]]
        # Sent after a change had committed: never charged a price older than that change.
        newest_committed_before = max((v for at, v in committed if at < sent), default=1)
        assert version >= newest_committed_before, (body["order_id"], version, sent)
    # The load ran across every change (else the test would have checked nothing).
    assert versions_seen == set(price_of), versions_seen
