"""The dispatch portal finds a job by its order right after checkout, filters and pages."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from support import checkout_body, signed, stripe_event

JOBS = "/api/portal/jobs"
CREATE = "POST /v1/checkout/sessions"


async def checkout(client, email: str = "ana@example.com") -> dict:
    answer = await client.post("/api/checkout", json=checkout_body(email=email))
    assert answer.status_code == 201, answer.text
    return answer.json()


async def pay(client, stripe, body: dict) -> None:
    session = stripe.complete_session(body["pay"]["session_id"])
    event_body, headers = signed(stripe_event("checkout.session.completed", session))
    answer = await client.post("/api/stripe/webhook", content=event_body, headers=headers)
    assert answer.json()["result"] == "paid"


async def portal(client, admin, **params) -> dict:
    answer = await client.get(JOBS, params=params, headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return answer.json()


async def test_a_job_is_found_by_its_order_id_right_after_checkout(client, db, admin):
    body = await checkout(client)

    found = await portal(client, admin, order_id=body["order_id"])

    job = await db.fetchrow("select * from h2s_dispatch_jobs where order_id = $1", body["order_id"])
    assert found == {
        "jobs": [
            {
                "job_id": body["job_id"],
                "order_id": body["order_id"],
                "order_status": "pending_payment",
                "recipient_id": str(job["recipient_id"]),
                "sequence_id": "bundle-default",
                "step_id": "bundle-default.schedule",
                "status": "queued",
                "due_at": found["jobs"][0]["due_at"],
                "created_at": found["jobs"][0]["created_at"],
                "customer": {"name": "Ana", "phone": "+15555550100"},
                "payment_flag": None,
                "service_address": {
                    "line1": "1 Main St",
                    "line2": None,
                    "city": "Austin",
                    "state": "TX",
                    "postal_code": "78701",
                    "country": "US",
                },
                "services": [{"sku": "tv-mount", "name": "TV wall mounting", "quantity": 1}],
            }
        ],
        "next_cursor": None,
    }
    assert datetime.fromisoformat(found["jobs"][0]["due_at"]) == job["due_at"]
    assert datetime.fromisoformat(found["jobs"][0]["created_at"]) == job["created_at"]
    # Order ids are matched whatever their case, as the timeline does.
    lower = await portal(client, admin, order_id=body["order_id"].lower())
    assert [j["job_id"] for j in lower["jobs"]] == [body["job_id"]]


RENTAL = {
    "line1": "22 Elm Ave",
    "line2": "Unit 4",
    "city": "Round Rock",
    "state": "TX",
    "postal_code": "78664",
    "country": "US",
}


async def test_a_job_shows_where_the_technician_goes_and_what_to_do(client, db, admin):
    body = await client.post(
        "/api/checkout",
        json=checkout_body(
            email="bo@example.com",
            name="Bo Jensen",
            phone="+1 (512) 555-0199",
            address=RENTAL,
            items=[
                {"sku": "smart-lock", "quantity": 2},
                {"sku": "wifi-mesh", "quantity": 1},
                {"sku": "smart-lock", "quantity": 1},  # split lines are one service
            ],
        ),
    )
    assert body.status_code == 201, body.text

    (job,) = (await portal(client, admin, order_id=body.json()["order_id"]))["jobs"]

    assert job["customer"] == {"name": "Bo Jensen", "phone": "+1 (512) 555-0199"}
    assert job["service_address"] == RENTAL
    assert sorted(job["services"], key=lambda s: s["sku"]) == [
        {"sku": "smart-lock", "name": "Smart lock installation", "quantity": 3},
        {"sku": "wifi-mesh", "name": "Wi-Fi mesh setup", "quantity": 1},
    ]
    # What a technician needs, not what the shop keeps: no email, no prices.
    assert "bo@example.com" not in str(job)
    assert "unit_amount_cents" not in str(job)


async def test_two_bookings_of_one_customer_at_two_addresses_are_two_jobs(client, db, admin):
    home = await checkout(client, "ana@example.com")
    rental = await client.post(
        "/api/checkout",
        json=checkout_body(
            email="ana@example.com",
            phone="+15555550111",
            address=RENTAL,
            items=[{"sku": "ceiling-fan", "quantity": 2}],
        ),
    )
    assert rental.status_code == 201, rental.text
    ana = await db.fetchval(
        "select recipient_id from h2s_recipients where email_normalized = 'ana@example.com'"
    )

    jobs = (await portal(client, admin, recipient_id=str(ana)))["jobs"]

    by_order = {j["order_id"]: j for j in jobs}
    assert set(by_order) == {home["order_id"], rental.json()["order_id"]}
    assert by_order[home["order_id"]]["service_address"]["line1"] == "1 Main St"
    assert by_order[home["order_id"]]["services"] == [
        {"sku": "tv-mount", "name": "TV wall mounting", "quantity": 1}
    ]
    assert by_order[rental.json()["order_id"]]["service_address"] == RENTAL
    assert by_order[rental.json()["order_id"]]["services"] == [
        {"sku": "ceiling-fan", "name": "Ceiling fan installation", "quantity": 2}
    ]
    # Each job keeps the phone given on its own booking, though the recipient row now
    # holds only the latest one.
    assert by_order[home["order_id"]]["customer"]["phone"] == "+15555550100"
    assert by_order[rental.json()["order_id"]]["customer"]["phone"] == "+15555550111"


async def test_the_same_cart_at_another_address_is_a_booking_of_its_own(client, db, admin):
    home = await checkout(client, "ana@example.com")
    rental = await client.post(
        "/api/checkout", json=checkout_body(email="ana@example.com", address=RENTAL)
    )
    assert rental.status_code == 201, rental.text
    assert rental.json()["order_id"] != home["order_id"]


async def test_an_unknown_order_finds_no_job(client, db, admin):
    await checkout(client)
    assert await portal(client, admin, order_id="ORD-0000000000000000") == {
        "jobs": [],
        "next_cursor": None,
    }


async def test_filters_by_recipient_status_and_creation_time(client, db, stripe, admin):
    ana_1 = await checkout(client, "ana@example.com")
    bo = await checkout(client, "bo@example.com")
    ana_2 = await client.post(
        "/api/checkout",
        json=checkout_body(email="ana@example.com", items=[{"sku": "smart-lock", "quantity": 1}]),
    )
    ana_2 = ana_2.json()
    await pay(client, stripe, ana_2)
    ana = await db.fetchval(
        "select recipient_id from h2s_recipients where email_normalized = 'ana@example.com'"
    )
    await db.execute(
        "update h2s_dispatch_jobs set created_at = created_at - interval '3 days'"
        " where order_id = $1",
        ana_1["order_id"],
    )

    by_recipient = await portal(client, admin, recipient_id=str(ana))
    assert {j["job_id"] for j in by_recipient["jobs"]} == {ana_1["job_id"], ana_2["job_id"]}

    dispatchable = await portal(client, admin, status="dispatchable")
    assert [(j["job_id"], j["order_status"]) for j in dispatchable["jobs"]] == [
        (ana_2["job_id"], "paid")
    ]

    queued = await portal(client, admin, status="queued")
    assert {j["job_id"] for j in queued["jobs"]} == {ana_1["job_id"], bo["job_id"]}

    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    recent = await portal(client, admin, created_since=since)
    assert {j["job_id"] for j in recent["jobs"]} == {bo["job_id"], ana_2["job_id"]}

    combined = await portal(client, admin, recipient_id=str(ana), created_since=since)
    assert [j["job_id"] for j in combined["jobs"]] == [ana_2["job_id"]]

    # A date alone is its midnight (UTC); an unencoded "+" in the offset is still read.
    today = datetime.now(UTC).date().isoformat()
    assert len((await portal(client, admin, created_since=today))["jobs"]) == 2
    raw = await client.get(f"{JOBS}?created_since={today}T00:00:00+00:00", headers=admin)
    assert raw.status_code == 200, raw.text
    assert len(raw.json()["jobs"]) == 2


async def test_pages_over_every_job_once_newest_first(client, db, admin, clock):
    made = []
    for i in range(7):
        made.append(await checkout(client, f"user{i}@example.com"))
        clock.advance(seconds=1)  # rows carry the flow's clock, which the test moves

    first = await portal(client, admin, limit=3)
    # A job created between two pages does not shift the pages that follow.
    late = await checkout(client, "late@example.com")
    second = await portal(client, admin, limit=3, cursor=first["next_cursor"])
    third = await portal(client, admin, limit=3, cursor=second["next_cursor"])

    pages = [first["jobs"], second["jobs"], third["jobs"]]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert third["next_cursor"] is None
    seen = [j["job_id"] for page in pages for j in page]
    assert seen == [b["job_id"] for b in reversed(made)]
    keys = [(j["created_at"], j["job_id"]) for page in pages for j in page]
    assert keys == sorted(keys, reverse=True)
    everything = await portal(client, admin, limit=200)
    assert [j["job_id"] for j in everything["jobs"]] == [late["job_id"], *seen]
    assert everything["next_cursor"] is None


async def test_a_page_holds_50_jobs_unless_told_otherwise(client, db, admin):
    for i in range(51):
        await checkout(client, f"user{i}@example.com")

    first = await portal(client, admin)
    rest = await portal(client, admin, cursor=first["next_cursor"])

    assert (len(first["jobs"]), len(rest["jobs"])) == (50, 1)
    assert rest["next_cursor"] is None


async def test_a_cleaned_checkouts_job_is_shown_only_when_cancelled_is_asked_for(
    client, db, stripe, admin
):
    good = await checkout(client, "good@example.com")
    stripe.faults.add("status", CREATE, status=400)
    failed = await client.post("/api/checkout", json=checkout_body(email="bad@example.com"))
    assert failed.status_code == 502
    order_id = await db.fetchval(
        "select order_id from h2s_checkouts where checkout_id = $1::uuid",
        failed.json()["checkout_trace_id"],
    )
    job_status = await db.fetchval(
        "select status from h2s_dispatch_jobs where order_id = $1", order_id
    )
    assert job_status == "cancelled"

    assert (await portal(client, admin, order_id=order_id))["jobs"] == []
    everything = await portal(client, admin)
    assert [j["job_id"] for j in everything["jobs"]] == [good["job_id"]]
    cancelled = await portal(client, admin, status="cancelled")
    assert [(j["order_id"], j["status"], j["order_status"]) for j in cancelled["jobs"]] == [
        (order_id, "cancelled", "cancelled")
    ]
    by_order = await portal(client, admin, order_id=order_id, status="cancelled")
    assert [j["order_id"] for j in by_order["jobs"]] == [order_id]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Basic x"}],
    ids=["no_token", "wrong_token", "wrong_scheme"],
)
async def test_the_portal_needs_the_admin_token(client, db, headers):
    answer = await client.get(JOBS, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


HEX_46 = "0" * 46
BAD_PARAMS = {
    "recipient_not_uuid": "recipient_id=not-a-uuid",
    "recipient_empty": "recipient_id=",
    "recipient_without_dashes": "recipient_id=" + "0" * 32,
    "recipient_braced": "recipient_id={00000000-0000-0000-0000-000000000000}",
    "date_words": "created_since=yesterday",
    "date_impossible": "created_since=2026-02-30",
    "date_empty": "created_since=",
    "time_without_offset": "created_since=2026-11-26T10:00:00",
    "date_compact": "created_since=20261126",
    "date_week": "created_since=2026-W48-4",
    "date_space_separated": "created_since=2026-11-26%2010:00:00Z",
    "date_trailing_newline": "created_since=2026-11-26%0A",
    "date_other_script_digits": "created_since=%D9%A2%D9%A0%D9%A2%D9%A6-11-26",
    "status_unknown": "status=done",
    "status_wrong_case": "status=Queued",
    "status_null": "status=null",
    "status_empty": "status=",
    "limit_zero": "limit=0",
    "limit_too_big": "limit=201",
    "limit_negative": "limit=-1",
    "limit_not_a_number": "limit=ten",
    "limit_float": "limit=2.5",
    "limit_empty": "limit=",
    "cursor_garbage": "cursor=%%%not-hex",
    "cursor_empty": "cursor=",
    "cursor_upper_case": "cursor=" + "A" * 46,
    "cursor_too_short": "cursor=" + HEX_46[:-1],
    "cursor_too_long": "cursor=" + HEX_46 + "0",
    "cursor_trailing_newline": "cursor=" + HEX_46 + "%0A",
    "cursor_old_base64": "cursor=" + _b64(b'["2026-11-26T00:00:00+00:00", "x"]'),
    "order_id_nul": "order_id=ORD-%00",
    "order_id_empty": "order_id=",
    "order_id_not_an_order": "order_id=ABC-0000000000000000",
    "order_id_too_short": "order_id=ORD-000000000000000",
    "order_id_not_hex": "order_id=ORD-000000000000000G",
    "order_id_trailing_newline": "order_id=ORD-0000000000000000%0A",
    "unknown_parameter": "stauts=cancelled",
    "repeated_parameter": "status=queued&status=cancelled",
}


@pytest.mark.parametrize("query", BAD_PARAMS.values(), ids=BAD_PARAMS.keys())
async def test_bad_parameters_are_a_400_with_a_stable_code(client, db, admin, query):
    await checkout(client)
    answer = await client.get(f"{JOBS}?{query}", headers=admin)
    assert answer.status_code == 400, answer.text
    assert answer.json()["ok"] is False
    assert answer.json()["error"]["code"] == "invalid_request"


async def test_times_at_the_ends_of_the_calendar_are_read_not_refused(client, db, admin):
    body = await checkout(client)
    # Valid RFC 3339 times whose UTC instant a datetime cannot hold.
    earliest = await client.get(f"{JOBS}?created_since=0001-01-01T00:00:00%2B14:00", headers=admin)
    latest = await client.get(f"{JOBS}?created_since=9999-12-31T23:59:59-14:00", headers=admin)

    assert earliest.status_code == latest.status_code == 200, earliest.text + latest.text
    assert [j["job_id"] for j in earliest.json()["jobs"]] == [body["job_id"]]
    assert latest.json()["jobs"] == []


async def test_lower_case_rfc_3339_and_a_date_alone_are_read(client, db, admin):
    body = await checkout(client)
    for since in ("2000-01-01t00:00:00z", "2000-01-01T00:00:00.123456789-05:00", "2000-01-01"):
        answer = await client.get(JOBS, params={"created_since": since}, headers=admin)
        assert answer.status_code == 200, (since, answer.text)
        assert [j["job_id"] for j in answer.json()["jobs"]] == [body["job_id"]]


async def test_the_schema_declares_each_parameter_as_the_server_checks_it(client):
    from h2s_checkout.api.portal import CURSOR_PATTERN, UUID_PATTERN
    from h2s_checkout.domain.keys import ORDER_ID_PATTERN

    document = (await client.get("/schema/openapi.json")).json()
    operation = document["paths"][JOBS]["get"]
    schemas = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}

    assert set(schemas) == {
        "order_id",
        "recipient_id",
        "status",
        "created_since",
        "limit",
        "cursor",
    }
    # Absent or a value: a query parameter is never null, so no schema offers null.
    assert all("null" not in str(schema) for schema in schemas.values()), schemas
    assert schemas["order_id"]["pattern"] == ORDER_ID_PATTERN
    assert (schemas["recipient_id"]["format"], schemas["recipient_id"]["pattern"]) == (
        "uuid",
        UUID_PATTERN,
    )
    assert schemas["status"]["enum"] == ["queued", "dispatchable", "completed", "cancelled"]
    assert [s["format"] for s in schemas["created_since"]["anyOf"]] == ["date", "date-time"]
    assert (schemas["limit"]["type"], schemas["limit"]["minimum"], schemas["limit"]["maximum"]) == (
        "integer",
        1,
        200,
    )
    assert schemas["cursor"]["pattern"] == CURSOR_PATTERN
    assert set(operation["responses"]) == {"200", "400", "401", "403", "503"}


async def test_the_schema_types_a_job_down_to_its_address_and_services(client):
    components = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]

    job = components["PortalJob"]["properties"]
    assert job["service_address"] == {"$ref": "#/components/schemas/ServiceAddress"}
    assert job["customer"] == {"$ref": "#/components/schemas/JobCustomer"}
    assert job["services"]["items"] == {"$ref": "#/components/schemas/JobService"}
    assert set(components["ServiceAddress"]["required"]) == {
        "line1",
        "city",
        "state",
        "postal_code",
        "country",
    }
    assert components["JobService"]["properties"]["quantity"]["type"] == "integer"
