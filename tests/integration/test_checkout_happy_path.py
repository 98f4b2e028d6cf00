"""A checkout end to end: the answer, every row it writes, the session at the emulator."""

from __future__ import annotations

import uuid
from datetime import timedelta

from h2s_checkout.domain.keys import stripe_idempotency_key
from support import checkout_body


async def test_checkout_answers_201_with_the_seed_shape(client, db, stripe):
    answer = await client.post("/api/checkout", json=checkout_body())

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert set(body) == {"ok", "checkout_trace_id", "order_id", "job_id", "pay"}
    assert body["ok"] is True
    assert body["order_id"].startswith("ORD-")
    assert str(uuid.UUID(body["job_id"])) == body["job_id"]
    assert body["pay"]["session_id"].startswith("cs_test_")
    assert body["pay"]["session_url"]
    assert answer.headers["cache-control"] == "no-store"


async def test_checkout_writes_each_row_linked_both_ways(client, db, stripe):
    body = (
        await client.post(
            "/api/checkout",
            json=checkout_body(
                email="  Ana@Example.COM ",
                items=[{"sku": "tv-mount", "quantity": 2}, {"sku": "smart-lock", "quantity": 1}],
            ),
        )
    ).json()
    checkout_id = uuid.UUID(body["checkout_trace_id"])
    session_id = body["pay"]["session_id"]

    checkout = await db.fetchrow("select * from h2s_checkouts where checkout_id = $1", checkout_id)
    assert checkout["state"] == "session_created"
    assert checkout["order_id"] == body["order_id"]
    assert str(checkout["job_id"]) == body["job_id"]
    assert checkout["session_id"] == session_id
    assert checkout["response_status"] == 201
    assert checkout["key_source"] == "derived"

    recipient = await db.fetchrow("select * from h2s_recipients")
    assert recipient["email_normalized"] == "ana@example.com"

    order = await db.fetchrow("select * from h2s_orders where order_id = $1", body["order_id"])
    assert order["status"] == "pending_payment"
    assert order["session_id"] == session_id
    assert order["recipient_id"] == recipient["recipient_id"]
    # Seed known issue 1: the job id is written back onto the order.
    assert order["metadata_json"]["dispatch_job_id"] == body["job_id"]
    # Prices come from the catalog: 2 x 149.00 + 1 x 129.00.
    assert order["subtotal_cents"] == 2 * 14900 + 12900
    assert order["total_cents"] == 2 * 14900 + 12900
    assert order["currency"] == "usd"

    job = await db.fetchrow("select * from h2s_dispatch_jobs where order_id = $1", body["order_id"])
    assert str(job["job_id"]) == body["job_id"]
    assert job["status"] == "queued"
    assert job["recipient_id"] == recipient["recipient_id"]
    assert job["sequence_id"] == "bundle-default"
    assert job["step_id"] == "bundle-default.schedule"
    assert job["due_at"] - job["created_at"] == timedelta(hours=24)

    session = stripe.get_session(session_id)
    assert session["status"] == "open"
    assert session["client_reference_id"] == body["order_id"]
    assert session["customer_email"] == "Ana@Example.COM"
    assert session["metadata"] == {
        "order_id": body["order_id"],
        "job_id": body["job_id"],
        "checkout_trace_id": body["checkout_trace_id"],
    }
    assert session["amount_total"] == order["total_cents"]
    assert session["success_url"].startswith("http://shop.test/")

    creates = stripe.find_requests("POST /v1/checkout/sessions")
    assert len(creates) == 1
    assert creates[0].idempotency_key == stripe_idempotency_key(checkout_id)


async def test_catalog_lists_server_side_prices(client):
    answer = await client.get("/api/catalog")
    assert answer.status_code == 200
    items = {item["sku"]: item for item in answer.json()["items"]}
    assert items["tv-mount"]["unit_amount_cents"] == 14900
    assert answer.headers["cache-control"] == "no-store"


async def test_one_recipient_per_normalised_email(client, db):
    for email in ("bo@example.com", " BO@example.com"):
        answer = await client.post(
            "/api/checkout",
            json=checkout_body(email=email, items=[{"sku": "ceiling-fan", "quantity": 1}]),
        )
        assert answer.status_code == 201
        # A different cart so the second request is a new checkout, not a replay.
        await client.post("/api/checkout", json=checkout_body(email=email))
    assert await db.fetchval("select count(*) from h2s_recipients") == 1
