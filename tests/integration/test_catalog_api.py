"""The shop's catalog through the API: add, change with If-Match, deactivate, history,
the storefront catalog's ETag, validation that writes nothing, and the catalog scope."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from h2s_checkout.app import create_app
from support import checkout_body, running, table_counts

NEW_ITEM = {
    "sku": "doorbell-cam",
    "name": "Video doorbell installation",
    "description": "Replace a wired doorbell with a video doorbell.",
    "unit_amount_cents": 11900,
    "currency": "usd",
    "max_quantity": 3,
}


async def make_key(client, admin, name: str, *scopes: str) -> dict[str, str]:
    answer = await client.post(
        "/api/keys", json={"name": name, "scopes": list(scopes)}, headers=admin
    )
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['key']}"}


async def current(client, admin, sku: str) -> httpx.Response:
    answer = await client.get(f"/api/catalog/items/{sku}", headers=admin)
    assert answer.status_code == 200, answer.text
    return answer


async def test_an_item_added_is_sold_at_once_and_its_history_names_who_added_it(client, admin):
    staff = await make_key(client, admin, "ana-staff", "catalog")
    created = await client.post("/api/catalog/items", json=NEW_ITEM, headers=staff)

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["version"] == 1
    assert body["active"] is True
    assert created.headers["etag"] == body["etag"]
    storefront = {i["sku"]: i for i in (await client.get("/api/catalog")).json()["items"]}
    assert storefront["doorbell-cam"]["unit_amount_cents"] == 11900
    booked = await client.post(
        "/api/checkout", json=checkout_body(items=[{"sku": "doorbell-cam", "quantity": 2}])
    )
    assert booked.status_code == 201, booked.text

    history = (await client.get("/api/catalog/items/doorbell-cam/history", headers=staff)).json()
    [entry] = history["changes"]
    assert entry["action"] == "created"
    assert entry["actor"] == "ana-staff"
    assert entry["before"] is None
    assert entry["after"]["unit_amount_cents"] == 11900


async def test_a_taken_sku_is_409_and_changes_nothing(client, admin, db):
    before = await db.fetchrow("select * from h2s_service_catalog where sku = 'tv-mount'")
    taken = await client.post(
        "/api/catalog/items", json={**NEW_ITEM, "sku": "tv-mount"}, headers=admin
    )
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "sku_taken"
    assert await db.fetchrow("select * from h2s_service_catalog where sku = 'tv-mount'") == before
    assert await db.fetchval("select count(*) from h2s_catalog_history") == 0


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"unit_amount_cents": 0}, 400, "invalid_request"),
        ({"unit_amount_cents": -100}, 400, "invalid_request"),
        ({"unit_amount_cents": 100_000_000}, 400, "invalid_request"),
        ({"currency": "xyz"}, 422, "unknown_currency"),
        ({"unit_amount_cents": 49}, 422, "price_below_minimum"),
        ({"active": 0}, 400, "invalid_request"),
        ({"currency": "USD"}, 400, "invalid_request"),
        ({"sku": "Not A Sku"}, 400, "invalid_request"),
        ({"sku": "x"}, 400, "invalid_request"),
        ({"max_quantity": 0}, 400, "invalid_request"),
        ({"max_quantity": 101}, 400, "invalid_request"),
        ({"name": ""}, 400, "invalid_request"),
        ({"price": 100}, 400, "invalid_request"),
    ],
)
async def test_bad_items_are_refused_with_a_stable_code_and_nothing_written(
    client, admin, db, change, status, code
):
    counts = await table_counts(db)
    catalog = await db.fetch("select * from h2s_service_catalog order by sku")
    added = await client.post("/api/catalog/items", json={**NEW_ITEM, **change}, headers=admin)
    changed = await client.patch(
        "/api/catalog/items/tv-mount",
        json={k: v for k, v in change.items() if k != "sku"} or {"sku": "other"},
        headers={**admin, "If-Match": (await current(client, admin, "tv-mount")).headers["etag"]},
    )

    for answer in (added, changed):
        assert answer.status_code in (status, 400), answer.text
        assert answer.json()["error"]["code"] in (code, "invalid_request")
    assert added.status_code == status
    assert added.json()["error"]["code"] == code
    assert await table_counts(db) == counts
    assert await db.fetch("select * from h2s_service_catalog order by sku") == catalog


async def test_a_change_needs_the_current_etag_428_without_412_stale(client, admin):
    etag = (await current(client, admin, "tv-mount")).headers["etag"]
    missing = await client.patch(
        "/api/catalog/items/tv-mount", json={"unit_amount_cents": 15900}, headers=admin
    )
    assert missing.status_code == 428
    assert missing.json()["error"]["code"] == "precondition_required"

    first = await client.patch(
        "/api/catalog/items/tv-mount",
        json={"unit_amount_cents": 15900},
        headers={**admin, "If-Match": etag},
    )
    assert first.status_code == 200, first.text
    assert first.headers["etag"] != etag
    assert first.json()["version"] == 2
    stale = await client.patch(
        "/api/catalog/items/tv-mount",
        json={"name": "TV mount"},
        headers={**admin, "If-Match": etag},
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert (await current(client, admin, "tv-mount")).json()["name"] == "TV wall mounting"


async def test_two_staff_patching_with_one_etag_one_wins_and_the_history_shows_one_change(
    client, admin
):
    ana = await make_key(client, admin, "ana", "catalog")
    bo = await make_key(client, admin, "bo", "catalog")
    etag = (await current(client, admin, "smart-lock")).headers["etag"]

    answers = await asyncio.gather(
        client.patch(
            "/api/catalog/items/smart-lock",
            json={"unit_amount_cents": 13900},
            headers={**ana, "If-Match": etag},
        ),
        client.patch(
            "/api/catalog/items/smart-lock",
            json={"unit_amount_cents": 11900},
            headers={**bo, "If-Match": etag},
        ),
    )

    assert sorted(a.status_code for a in answers) == [200, 412]
    [won] = [a for a in answers if a.status_code == 200]
    history = (await client.get("/api/catalog/items/smart-lock/history", headers=admin)).json()
    [change] = history["changes"]
    assert change["before"]["unit_amount_cents"] == 12900
    assert change["after"]["unit_amount_cents"] == won.json()["unit_amount_cents"]
    assert change["actor"] in ("ana", "bo")
    assert (await current(client, admin, "smart-lock")).json() == won.json()


async def test_a_deactivated_item_is_not_sold_stays_listed_for_staff_and_comes_back(client, admin):
    etag = (await current(client, admin, "wifi-mesh")).headers["etag"]
    off = await client.patch(
        "/api/catalog/items/wifi-mesh", json={"active": False}, headers={**admin, "If-Match": etag}
    )
    assert off.status_code == 200
    assert off.json()["active"] is False

    storefront = [i["sku"] for i in (await client.get("/api/catalog")).json()["items"]]
    assert "wifi-mesh" not in storefront
    staff = (await client.get("/api/catalog/items", headers=admin)).json()["items"]
    assert "wifi-mesh" not in [i["sku"] for i in staff]
    everything = await client.get("/api/catalog/items?include_inactive=true", headers=admin)
    assert "wifi-mesh" in [i["sku"] for i in everything.json()["items"]]
    refused = await client.post(
        "/api/checkout", json=checkout_body(items=[{"sku": "wifi-mesh", "quantity": 1}])
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "unknown_sku"

    back = await client.patch(
        "/api/catalog/items/wifi-mesh",
        json={"active": True},
        headers={**admin, "If-Match": off.headers["etag"]},
    )
    assert back.status_code == 200
    booked = await client.post(
        "/api/checkout", json=checkout_body(items=[{"sku": "wifi-mesh", "quantity": 1}])
    )
    assert booked.status_code == 201, booked.text
    actions = [
        c["action"]
        for c in (await client.get("/api/catalog/items/wifi-mesh/history", headers=admin)).json()[
            "changes"
        ]
    ]
    assert actions == ["reactivated", "deactivated"]  # newest first


async def test_the_storefront_catalog_answers_its_etag_and_304_until_it_changes(client, admin):
    first = await client.get("/api/catalog")
    etag = first.headers["etag"]
    again = await client.get("/api/catalog", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag

    item = await current(client, admin, "camera-4")
    await client.patch(
        "/api/catalog/items/camera-4",
        json={"unit_amount_cents": 42900},
        headers={**admin, "If-Match": item.headers["etag"]},
    )
    changed = await client.get("/api/catalog", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    prices = {i["sku"]: i["unit_amount_cents"] for i in changed.json()["items"]}
    assert prices["camera-4"] == 42900


async def test_managing_the_catalog_needs_the_catalog_scope_and_nothing_else(client, admin):
    operator = await make_key(client, admin, "ops", "operate", "admin", "read")
    staff = await make_key(client, admin, "staff", "catalog")
    etag = (await current(client, admin, "tv-mount")).headers["etag"]

    refused = await client.patch(
        "/api/catalog/items/tv-mount",
        json={"unit_amount_cents": 1},
        headers={**operator, "If-Match": etag},
    )
    assert refused.status_code == 403
    # ...and the catalog key moves no money and makes no keys.
    assert (await client.get("/api/keys", headers=staff)).status_code == 403
    assert (await client.post("/api/reconcile", headers=staff)).status_code == 403


async def test_a_price_changed_on_one_replica_is_what_the_next_checkout_on_another_charges(
    settings, client, admin, db, stripe, clock
):
    other = create_app(settings, clock=clock)
    async with running(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as replica:
            # The replica has the catalog cached, and an answered checkout at the old price.
            assert (await replica.get("/api/catalog")).status_code == 200
            before = await replica.post("/api/checkout", json=checkout_body())
            assert before.status_code == 201, before.text

            item = await current(client, admin, "tv-mount")
            patched = await client.patch(
                "/api/catalog/items/tv-mount",
                json={"unit_amount_cents": 16900},
                headers={**admin, "If-Match": item.headers["etag"]},
            )
            assert patched.status_code == 200

            after = await replica.post("/api/checkout", json=checkout_body(email="cy@example.com"))
            replay = await replica.post("/api/checkout", json=checkout_body())

    assert after.status_code == 201, after.text
    order = await db.fetchrow(
        "select * from h2s_orders where order_id = $1", after.json()["order_id"]
    )
    assert order["total_cents"] == 16900
    assert order["items"][0]["unit_amount_cents"] == 16900
    assert order["items"][0]["catalog_version"] == 2
    lines = stripe.line_items(after.json()["pay"]["session_id"])
    assert [line["price"]["unit_amount"] for line in lines] == [16900]
    # The checkout made before the change answers as it was made.
    assert replay.status_code == 201
    assert replay.json() == before.json()
    old = await db.fetchrow(
        "select * from h2s_orders where order_id = $1", before.json()["order_id"]
    )
    assert old["total_cents"] == 14900
    # The stale copy cost one refused phase 1 and wrote nothing: two orders in all.
    assert await db.fetchval("select count(*) from h2s_orders") == 2


async def test_a_retry_of_a_booking_made_before_its_item_was_deactivated_answers_it(
    client, admin, db
):
    body = checkout_body(items=[{"sku": "ceiling-fan", "quantity": 2}])
    first = await client.post("/api/checkout", json=body)
    assert first.status_code == 201, first.text
    etag = (await current(client, admin, "ceiling-fan")).headers["etag"]
    off = await client.patch(
        "/api/catalog/items/ceiling-fan",
        json={"active": False},
        headers={**admin, "If-Match": etag},
    )
    assert off.status_code == 200

    retry = await client.post("/api/checkout", json=body)
    new = await client.post(
        "/api/checkout", json=checkout_body(email="cy@example.com", items=body["items"])
    )

    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert new.status_code == 422
    assert new.json()["error"]["code"] == "unknown_sku"
    assert await db.fetchval("select count(*) from h2s_orders") == 1


async def test_a_cart_over_one_payments_bound_is_refused_before_anything_is_written(
    client, admin, db, stripe
):
    item = await current(client, admin, "camera-4")
    await client.patch(
        "/api/catalog/items/camera-4",
        json={"unit_amount_cents": 99_999_999},
        headers={**admin, "If-Match": item.headers["etag"]},
    )
    counts = await table_counts(db)

    refused = await client.post(
        "/api/checkout", json=checkout_body(items=[{"sku": "camera-4", "quantity": 2}])
    )

    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "amount_too_large"
    assert await table_counts(db) == counts
    assert stripe.find_requests("POST /v1/checkout/sessions") == []
