"""Catalog and service-area changes reach subscribers from the same outbox as orders'."""

from __future__ import annotations

from support import checkout_body


async def subscribe(client, admin, *types: str) -> str:
    answer = await client.post(
        "/api/event-endpoints",
        json={"url": "http://127.0.0.1:9/h2s", "event_types": list(types)},
        headers=admin,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def test_each_catalog_change_is_one_event_with_the_item_before_and_after(client, admin, db):
    endpoint = await subscribe(
        client, admin, "catalog.item_created", "catalog.item_updated", "service_area.updated"
    )
    created = await client.post(
        "/api/catalog/items",
        json={"sku": "gutter-clean", "name": "Gutter cleaning", "unit_amount_cents": 8900},
        headers=admin,
    )
    patched = await client.patch(
        "/api/catalog/items/gutter-clean",
        json={"unit_amount_cents": 9900},
        headers={**admin, "If-Match": created.headers["etag"]},
    )
    area = await client.put(
        "/api/service-area",
        json={"areas": [{"country": "US", "postal_code_prefixes": ["787"]}]},
        headers={**admin, "If-Match": '"service-area.v0"'},
    )
    assert (created.status_code, patched.status_code, area.status_code) == (201, 200, 200)
    # An order's events are not sent to an endpoint that asked for catalog events only.
    assert (await client.post("/api/checkout", json=checkout_body())).status_code == 201

    events = await db.fetch(
        "select type, sequence, order_id, body from h2s_events order by created_at"
    )
    assert [(e["type"], e["sequence"]) for e in events] == [
        ("catalog.item_created", 1),
        ("catalog.item_updated", 2),
        ("service_area.updated", 1),
    ]
    assert all(e["order_id"] is None for e in events)
    updated = events[1]["body"]["data"]
    assert updated["item"]["unit_amount_cents"] == 9900
    assert updated["previous"]["unit_amount_cents"] == 8900
    assert events[2]["body"]["data"]["service_area"]["areas"][0]["country"] == "US"
    deliveries = await client.get(f"/api/event-endpoints/{endpoint}/deliveries", headers=admin)
    assert deliveries.status_code == 200, deliveries.text
    assert len(deliveries.json()["deliveries"]) == 3


async def test_a_refused_change_is_no_event(client, admin, db):
    await subscribe(client, admin, "*")
    stale = await client.patch(
        "/api/catalog/items/tv-mount",
        json={"unit_amount_cents": 9900},
        headers={**admin, "If-Match": '"tv-mount.v9"'},
    )
    assert stale.status_code == 412
    assert await db.fetchval("select count(*) from h2s_events") == 0
