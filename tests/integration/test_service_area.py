"""The service area: public to read, set with If-Match by catalog staff, and a booking
outside it refused before anything is written or counted, on every replica."""

from __future__ import annotations

import dataclasses

import httpx

from h2s_checkout.app import create_app
from support import checkout_body, running, table_counts

AUSTIN = {"areas": [{"country": "US", "postal_code_prefixes": ["787", "78613"]}]}


def at(postal_code: str, email: str = "ana@example.com", country: str = "US") -> dict:
    body = checkout_body(email=email)
    body["customer"]["address"] |= {"postal_code": postal_code, "country": country}
    return body


async def put_area(client, admin, areas: dict, etag: str | None = None) -> httpx.Response:
    if etag is None:
        etag = (await client.get("/api/service-area")).headers["etag"]
    return await client.put("/api/service-area", json=areas, headers={**admin, "If-Match": etag})


async def test_no_area_set_is_everywhere_and_public(client):
    answer = await client.get("/api/service-area")

    assert answer.status_code == 200
    assert answer.json()["areas"] == []
    assert answer.json()["everywhere"] is True
    not_changed = await client.get(
        "/api/service-area", headers={"If-None-Match": answer.headers["etag"]}
    )
    assert not_changed.status_code == 304
    booked = await client.post("/api/checkout", json=at("10001"))
    assert booked.status_code == 201, booked.text


async def test_setting_the_area_needs_if_match_and_keeps_its_history(client, admin):
    missing = await client.put("/api/service-area", json=AUSTIN, headers=admin)
    assert missing.status_code == 428
    stale = await put_area(client, admin, AUSTIN, etag='"service-area.v7"')
    assert stale.status_code == 412

    first = await put_area(client, admin, AUSTIN)
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    assert first.json()["updated_by"] == "bootstrap"
    again = await put_area(client, admin, {"areas": []}, etag='"service-area.v0"')
    assert again.status_code == 412  # someone set it since v0

    [change] = (await client.get("/api/service-area/history", headers=admin)).json()["changes"]
    assert change["before"] == {"areas": []}
    assert change["after"] == {
        "areas": [{"country": "US", "postal_code_prefixes": ["78613", "787"]}]
    }
    assert change["actor"] == "bootstrap"


async def test_a_booking_outside_the_area_is_422_and_the_database_holds_nothing_new(
    settings, admin, db, stripe, clock
):
    limited = dataclasses.replace(
        settings, limit_checkouts_per_minute_ip=5, limit_checkouts_per_minute_email=5
    )
    app = create_app(limited, clock=clock)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await put_area(client, admin, AUSTIN)).status_code == 200
            counts = await table_counts(db)

            outside = await client.post("/api/checkout", json=at("10001"))
            elsewhere = await client.post("/api/checkout", json=at("78701", country="CA"))

            assert await table_counts(db) == counts  # no order, job, trace or count
            assert stripe.find_requests("POST /v1/checkout/sessions") == []
            for answer in (outside, elsewhere):
                assert answer.status_code == 422, answer.text
                assert answer.json()["error"]["code"] == "outside_service_area"
            inside = [
                await client.post("/api/checkout", json=at(code, email=f"{i}@example.com"))
                for i, code in enumerate(["78701", "78613-1234", "787 05"])
            ]
    assert [a.status_code for a in inside] == [201, 201, 201], [a.text for a in inside]


async def test_an_area_set_on_one_replica_refuses_the_next_booking_on_another(
    settings, client, admin, db, clock
):
    other = create_app(settings, clock=clock)
    async with running(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as replica:
            first = await replica.post("/api/checkout", json=at("10001"))  # caches: everywhere
            assert first.status_code == 201, first.text
            assert (await put_area(client, admin, AUSTIN)).status_code == 200
            counts = await table_counts(db)

            refused = await replica.post("/api/checkout", json=at("10001", "bo@example.com"))

            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "outside_service_area"
            assert await table_counts(db) == counts
            # A booking answered before the area changed still replays as it was.
            replay = await replica.post("/api/checkout", json=at("10001"))
    assert replay.status_code == 201
    assert replay.json() == first.json()


async def test_bad_areas_are_refused_and_nothing_is_written(client, admin, db):
    counts = await table_counts(db)
    for areas in (
        {"areas": [{"country": "us", "postal_code_prefixes": ["787"]}]},
        {"areas": [{"country": "US", "postal_code_prefixes": []}]},
        {"areas": [{"country": "US", "postal_code_prefixes": ["78/7"]}]},
        {"areas": [{"country": "US"}]},
        {"areas": [], "extra": 1},
    ):
        answer = await put_area(client, admin, areas)
        assert answer.status_code == 400, (areas, answer.text)
        assert answer.json()["error"]["code"] == "invalid_request"
    assert await table_counts(db) == counts
