"""Outbound events end to end in one process: subscribe, change orders, deliver to a real
receiver on 127.0.0.1, verify with the standardwebhooks package; retries, 410, rotation,
the timeline, the doctor. Deliveries are driven pass by pass with the test's clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from events_receiver import EventReceiver
from h2s_checkout.domain.events import new_secret
from h2s_checkout.flows.doctor import DoctorOptions, run_checks
from h2s_checkout.flows.event_delivery import DeliverySettings, EventDeliverer, GuardedResolver
from h2s_checkout.flows.reaper import reap_events
from h2s_checkout.store import outbox
from h2s_checkout.store.traces import utcnow
from support import checkout_body, signed, stripe_event, table_counts

ENDPOINTS = "/api/event-endpoints"


@pytest.fixture
def settings(settings):
    return settings.with_overrides(events_timeout_s=1.0)


@pytest.fixture
def deliverer(client):
    return client.app.state.event_deliverer


@pytest.fixture
def receiver():
    with EventReceiver() as r:
        yield r


async def subscribe(client, admin, url: str, **extra) -> dict:
    answer = await client.post(ENDPOINTS, json={"url": url, **extra}, headers=admin)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def checkout(client, email: str = "ana@example.com") -> dict:
    answer = await client.post("/api/checkout", json=checkout_body(email=email))
    assert answer.status_code == 201, answer.text
    return answer.json()


async def stripe_says(client, event_type: str, session: dict) -> None:
    body, headers = signed(stripe_event(event_type, session))
    answer = await client.post("/api/stripe/webhook", content=body, headers=headers)
    assert answer.status_code == 200, answer.text


async def paid_checkout(client, stripe, email: str) -> dict:
    """A checkout whose session Stripe says is paid: order.created, then order.paid."""
    made = await checkout(client, email)
    await stripe_says(
        client, "checkout.session.completed", stripe.complete_session(made["pay"]["session_id"])
    )
    return made


async def deliveries(client, admin, endpoint_id: str, **query) -> list[dict]:
    answer = await client.get(f"{ENDPOINTS}/{endpoint_id}/deliveries", params=query, headers=admin)
    assert answer.status_code == 200, answer.text
    return answer.json()["deliveries"]


# -- subscribing ------------------------------------------------------------------------


async def test_a_subscriber_gets_its_secret_once_and_is_listed_without_it(client, admin):
    made = await subscribe(client, admin, "http://127.0.0.1:9/h2s", description="dispatch")

    assert made["id"].startswith("ep_")
    assert made["secret"].startswith("whsec_")
    assert (made["event_types"], made["status"]) == (["*"], "enabled")
    listed = (await client.get(ENDPOINTS, headers=admin)).json()["endpoints"]
    assert [e["id"] for e in listed] == [made["id"]]
    assert "secret" not in listed[0]
    assert (await client.get(ENDPOINTS)).status_code == 401

    assert (await client.delete(f"{ENDPOINTS}/{made['id']}", headers=admin)).status_code == 204
    assert (await client.get(ENDPOINTS, headers=admin)).json()["endpoints"] == []
    again = await client.delete(f"{ENDPOINTS}/{made['id']}", headers=admin)
    assert (again.status_code, again.json()["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://127.0.0.1/h"},
        {"url": "http://user:secret@127.0.0.1/h"},
        {"url": "http://169.254.169.254/latest/meta-data/"},
        {"url": "http://169.254.1.1/h"},
        {"url": "http://[fd00:ec2::254]/h"},
        {"url": "http://metadata.google.internal/h"},
        {"url": "not a url"},
        {"url": "http://127.0.0.1/h", "event_types": ["order.shipped"]},
        {"url": "http://127.0.0.1/h", "event_types": []},
        {"url": "http://127.0.0.1/h", "secret": "whsec_mine"},
        {"url": "http://127.0.0.1/h", "description": "line\nbreak"},
        {},
    ],
)
async def test_rejected_urls_and_bodies_write_nothing(client, admin, db, body):
    before = await table_counts(db)
    answer = await client.post(ENDPOINTS, json=body, headers=admin)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"
    assert await table_counts(db) == before


async def test_private_addresses_need_the_setting(client, admin, db):
    client.app.state.settings = client.app.state.settings.with_overrides(events_allow_private=False)
    for url in ("http://127.0.0.1:9000/h", "http://localhost:9000/h", "http://10.0.0.8/h"):
        answer = await client.post(ENDPOINTS, json={"url": url}, headers=admin)
        assert answer.status_code == 400, url
        assert "H2S_EVENTS_ALLOW_PRIVATE" in answer.json()["error"]["message"]
    assert await db.fetchval("select count(*) from h2s_event_endpoints") == 0


# -- delivering -------------------------------------------------------------------------


async def test_every_event_type_reaches_the_receiver_and_verifies(
    client, admin, db, stripe, deliverer, receiver
):
    secret = (await subscribe(client, admin, receiver.url))["secret"]
    paid = await paid_checkout(client, stripe, "paid@example.com")
    expired = await checkout(client, "expired@example.com")
    await stripe_says(
        client, "checkout.session.expired", stripe.expire_session(expired["pay"]["session_id"])
    )
    # The cancel and refund flows (issue 12) emit theirs with the same function.
    other = await checkout(client, "other@example.com")
    for event_type in (
        "order.cancelled",
        "order.refund_pending",
        "order.refunded",
        "order.refund_failed",
    ):
        async with db.transaction():
            await outbox.enqueue_order_event(db, other["order_id"], event_type)

    assert (await deliverer.run_once())["delivered"] == 9

    verified = [d.verify(secret) for d in receiver.snapshot()]
    by_order: dict[str, list[tuple[int, str]]] = {}
    for event in verified:
        by_order.setdefault(event["data"]["order"]["order_id"], []).append(
            (event["data"]["sequence"], event["type"])
        )
    assert sorted(by_order[paid["order_id"]]) == [(1, "order.created"), (2, "order.paid")]
    assert sorted(by_order[expired["order_id"]]) == [(1, "order.created"), (2, "order.expired")]
    assert sorted(by_order[other["order_id"]]) == [
        (1, "order.created"),
        (2, "order.cancelled"),
        (3, "order.refund_pending"),
        (4, "order.refunded"),
        (5, "order.refund_failed"),
    ]
    paid_event = next(e for e in verified if e["type"] == "order.paid")
    assert paid_event["data"]["job"]["status"] == "dispatchable"
    assert paid_event["data"]["checkout_trace_id"] == paid["checkout_trace_id"]
    created = next(
        e
        for e in verified
        if e["type"] == "order.created" and e["data"]["order"]["order_id"] == paid["order_id"]
    )
    assert (created["data"]["order"]["status"], created["data"]["job"]["status"]) == (
        "pending_payment",
        "queued",
    )
    ids = [d.webhook_id for d in receiver.snapshot()]
    assert len(set(ids)) == 9
    assert set(ids) == {r["event_id"] for r in await db.fetch("select event_id from h2s_events")}
    assert await deliverer.run_once() == {}  # nothing is sent twice


async def test_a_delivery_not_yet_sent_is_listed_as_due(client, admin, db):
    endpoint = await subscribe(client, admin, "http://127.0.0.1:9/h2s")
    await checkout(client)

    [waiting] = await deliveries(client, admin, endpoint["id"], status="pending")
    assert (waiting["attempts"], waiting["event_type"]) == ([], "order.created")
    assert waiting["next_attempt_at"] == waiting["created_at"]


async def test_two_failures_then_success_is_three_attempts_with_one_webhook_id(
    client, admin, clock, deliverer
):
    with EventReceiver([500, 503]) as receiver:
        endpoint = await subscribe(client, admin, receiver.url)
        await checkout(client)

        assert await deliverer.run_once() == {"retrying": 1}
        assert await deliverer.run_once() == {}  # not due before its delay
        clock.advance(seconds=7)
        assert await deliverer.run_once() == {"retrying": 1}
        clock.advance(minutes=7)
        assert await deliverer.run_once() == {"delivered": 1}

    sent = receiver.snapshot()
    assert [d.answered for d in sent] == [500, 503, 200]
    assert len({d.webhook_id for d in sent}) == 1
    for d in sent:
        d.verify(endpoint["secret"])
    [delivery] = await deliveries(client, admin, endpoint["id"])
    assert (delivery["status"], delivery["event_type"]) == ("delivered", "order.created")
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
    assert delivery["attempts"][2]["response_body"] == '{"received": true}'
    assert delivery["event_id"] == sent[0].webhook_id


async def test_a_receiver_that_does_not_answer_in_time_is_retried(
    client, admin, clock, db, deliverer
):
    with EventReceiver([("sleep", 3)]) as receiver:
        endpoint = await subscribe(client, admin, receiver.url)
        await checkout(client)

        assert await deliverer.run_once() == {"retrying": 1}
        [late] = await deliveries(client, admin, endpoint["id"])
        assert late["status"] == "pending"
        assert late["attempts"][0]["status_code"] is None
        assert "no answer within 1 s" in late["attempts"][0]["error"]

        clock.advance(seconds=7)
        assert await deliverer.run_once() == {"delivered": 1}
    assert len({d.webhook_id for d in receiver.snapshot()}) == 1


async def test_410_gone_disables_the_endpoint(client, admin, db, deliverer):
    with EventReceiver([410]) as gone, EventReceiver() as kept:
        dead = await subscribe(client, admin, gone.url)
        alive = await subscribe(client, admin, kept.url)
        await checkout(client, "one@example.com")

        assert await deliverer.run_once() == {"endpoint_gone": 1, "delivered": 1}
        await checkout(client, "two@example.com")
        assert await deliverer.run_once() == {"delivered": 1}

    assert len(gone.snapshot()) == 1
    assert len(kept.snapshot()) == 2
    listed = {e["id"]: e for e in (await client.get(ENDPOINTS, headers=admin)).json()["endpoints"]}
    assert listed[dead["id"]]["status"] == "disabled"
    assert "410" in listed[dead["id"]]["status_reason"]
    assert listed[alive["id"]]["status"] == "enabled"
    [failed] = await deliveries(client, admin, dead["id"], status="failed")
    retry = await client.post(f"/api/event-deliveries/{failed['id']}/retry", headers=admin)
    assert (retry.status_code, retry.json()["error"]["code"]) == (409, "endpoint_not_enabled")


async def test_spent_retries_fail_and_a_manual_retry_sends_again(client, admin, clock, deliverer):
    with EventReceiver([500] * 8) as receiver:
        endpoint = await subscribe(client, admin, receiver.url)
        await checkout(client)
        outcomes = []
        for _ in range(8):
            outcomes += list((await deliverer.run_once()).elements())
            clock.advance(hours=13)
        assert outcomes == ["retrying"] * 7 + ["failed"]
        [failed] = await deliveries(client, admin, endpoint["id"], status="failed")
        assert len(failed["attempts"]) == 8

        retry = await client.post(f"/api/event-deliveries/{failed['id']}/retry", headers=admin)
        assert retry.status_code == 202
        assert await deliverer.run_once() == {"delivered": 1}

    assert len({d.webhook_id for d in receiver.snapshot()}) == 1
    assert len(receiver.snapshot()) == 9
    missing = await client.post("/api/event-deliveries/dlv_nope/retry", headers=admin)
    assert missing.status_code == 404
    bad = await client.get(
        f"{ENDPOINTS}/{endpoint['id']}/deliveries", params={"status": "lost"}, headers=admin
    )
    assert bad.status_code == 400


async def test_after_a_rotation_both_secrets_verify_for_24_hours_then_only_the_new(
    client, admin, clock, deliverer, receiver
):
    endpoint = await subscribe(client, admin, receiver.url)
    old = endpoint["secret"]
    rotated = await client.post(f"{ENDPOINTS}/{endpoint['id']}/rotate-secret", headers=admin)
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != old
    assert rotated.json()["previous_secret_expires_at"]

    await checkout(client, "during@example.com")
    await deliverer.run_once()
    during = receiver.snapshot()[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    during.verify(old)
    during.verify(new)

    await checkout(client, "after@example.com")  # signed when sent, after the overlap
    clock.advance(hours=24, seconds=1)
    await deliverer.run_once()
    after = receiver.snapshot()[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    after.verify(new)
    with pytest.raises(WebhookVerificationError):
        after.verify(old)
    missing = await client.post(f"{ENDPOINTS}/ep_nope/rotate-secret", headers=admin)
    assert missing.status_code == 404


# -- transactional ----------------------------------------------------------------------


async def test_a_checkout_that_fails_before_its_link_announces_nothing(
    client, admin, db, stripe, deliverer, receiver
):
    await subscribe(client, admin, receiver.url)
    stripe.faults.add("status", "POST /v1/checkout/sessions", status=500)

    failed = await client.post("/api/checkout", json=checkout_body())

    assert failed.status_code == 502
    assert await db.fetchval("select status from h2s_orders") == "cancelled"
    assert await db.fetchval("select count(*) from h2s_events") == 0
    assert await deliverer.run_once() == {}
    assert receiver.snapshot() == []


async def test_when_the_event_cannot_be_written_the_link_is_not_made_either(
    client, admin, db, stripe, deliverer, receiver
):
    await subscribe(client, admin, receiver.url)
    # Fault injected at the database: the outbox refuses the row inside phase 3's statement.
    await db.execute(
        """
        create or replace function h2s_test_refuse_event() returns trigger language plpgsql as $$
        begin raise exception 'injected outbox failure'; end $$;
        create trigger h2s_test_refuse_event before insert on h2s_events
            for each row execute function h2s_test_refuse_event();
        """
    )
    try:
        answer = await client.post("/api/checkout", json=checkout_body())
    finally:
        await db.execute(
            "drop trigger h2s_test_refuse_event on h2s_events;"
            " drop function h2s_test_refuse_event()"
        )

    assert answer.status_code == 500
    order = await db.fetchrow("select status, session_id from h2s_orders")
    assert (order["status"], order["session_id"]) == ("cancelled", None)
    assert await db.fetchval("select state from h2s_checkouts") == "cleaned"
    assert [s["status"] for s in stripe.sessions] == ["expired"]
    assert await db.fetchval("select count(*) from h2s_events") == 0
    assert await deliverer.run_once() == {}
    assert receiver.snapshot() == []


# -- seeing it --------------------------------------------------------------------------


async def test_the_timeline_and_debug_page_show_each_event_and_its_attempts(
    client, admin, stripe, clock, deliverer
):
    with EventReceiver([500]) as receiver:
        endpoint = await subscribe(client, admin, receiver.url)
        made = await checkout(client)
        await deliverer.run_once()
        clock.advance(seconds=7)
        await deliverer.run_once()

    timeline = (
        await client.get(f"/api/checkouts/{made['checkout_trace_id']}/timeline", headers=admin)
    ).json()
    [event] = timeline["events"]
    assert (event["type"], event["sequence"]) == ("order.created", 1)
    [delivery] = event["deliveries"]
    assert (delivery["endpoint_id"], delivery["status"]) == (endpoint["id"], "delivered")
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]

    page = await client.get(f"/debug/checkouts/{made['checkout_trace_id']}", headers=admin)
    assert page.status_code == 200
    assert "order.created" in page.text
    assert event["event_id"] in page.text
    assert receiver.url in page.text


async def test_doctor_counts_events_no_enabled_endpoint_received(client, admin, db, clock):
    endpoint = await subscribe(client, admin, "http://127.0.0.1:9/h2s")  # nobody listens
    made = await checkout(client)
    options = DoctorOptions(clock=lambda: clock.now + timedelta(minutes=11))

    results = {r.name: r for r in await run_checks(db, None, options)}
    assert results["undelivered_events"].count == 1
    event_id = await db.fetchval("select event_id from h2s_events")
    assert results["undelivered_events"].examples == (event_id,)

    await client.delete(f"{ENDPOINTS}/{endpoint['id']}", headers=admin)
    results = {r.name: r for r in await run_checks(db, None, options)}
    assert results["undelivered_events"].count == 0
    assert made["order_id"]


async def test_deliveries_are_counted_in_the_metrics(client, admin, deliverer, receiver):
    await subscribe(client, admin, receiver.url)
    await checkout(client)
    await deliverer.run_once()

    text = (await client.get("/metrics")).text
    assert 'h2s_event_deliveries_total{outcome="delivered"}' in text
    assert "h2s_event_delivery_lag_seconds_bucket" in text


async def test_the_sender_judges_every_address_again_when_it_connects(
    client, db, settings, receiver
):
    # Allowed when it was registered, refused by a sender that may not reach it now.
    await outbox.insert_endpoint(
        db, "ep_local", url=receiver.url, description="", event_types=["*"], secret=new_secret()
    )
    await checkout(client)
    strict = EventDeliverer(
        settings.database_url or "",
        DeliverySettings(allow_private=False),
        clock=client.app.state.event_deliverer.clock,
        listen_dsn=settings.database_url,
    )
    try:
        assert await strict.run_once() == {"retrying": 1}
    finally:
        await strict.close()
    assert receiver.snapshot() == []
    attempt = await db.fetchrow("select * from h2s_event_attempts")
    assert "private or loopback" in attempt["error"]

    guard = GuardedResolver(allow_private=False)
    with pytest.raises(OSError, match="may not be sent to"):
        await guard.resolve("localhost", 80)  # a name: judged by the sender's resolver
    assert await GuardedResolver(allow_private=True).resolve("localhost", 80)


async def test_options_names_every_method_of_the_endpoints_path(client, admin):
    answer = await client.options(ENDPOINTS, headers=admin)
    assert (answer.status_code, answer.headers["allow"]) == (204, "GET, OPTIONS, POST")


# -- retention --------------------------------------------------------------------------


async def test_ended_events_past_retention_go_and_an_orders_sequence_counts_on(
    client, admin, db, stripe, deliverer, receiver
):
    secret = (await subscribe(client, admin, receiver.url))["secret"]
    paid = await paid_checkout(client, stripe, "paid@example.com")
    waiting = await checkout(client, "waiting@example.com")
    async with db.transaction():
        await outbox.enqueue_order_event(db, waiting["order_id"], "order.cancelled")
    assert (await deliverer.run_once())["delivered"] == 4
    # The waiting order's first event is being retried: still pending.
    await db.execute(
        "update h2s_event_deliveries d set status = 'pending' from h2s_events e"
        " where e.event_id = d.event_id and e.order_id = $1 and e.sequence = 1",
        waiting["order_id"],
    )
    pool = client.app.state.db_pool
    month = timedelta(days=30)

    assert await reap_events(pool, month) == 0  # nothing is a month old yet

    gone = await db.fetch(
        "select d.delivery_id from h2s_events e join h2s_event_deliveries d using (event_id)"
        " where e.order_id = $1",
        paid["order_id"],
    )
    a_month_on = lambda: utcnow() + timedelta(days=31)  # noqa: E731
    # Both of the paid order's events (its latest too) and the waiting order's delivered
    # cancel go; its first event is still being delivered and stays.
    assert await reap_events(pool, month, a_month_on) == 3
    left = await db.fetch("select order_id, sequence, type from h2s_events")
    assert [(r["order_id"], r["sequence"], r["type"]) for r in left] == [
        (waiting["order_id"], 1, "order.created")
    ]
    ids = [r["delivery_id"] for r in gone]
    for table in ("h2s_event_deliveries", "h2s_event_attempts"):
        assert (
            await db.fetchval(f"select count(*) from {table} where delivery_id = any($1)", ids) == 0
        )
    assert await reap_events(pool, month, a_month_on) == 0  # a second pass finds nothing

    # The paid order's next event counts on from the last one it had (2), so a receiver
    # that keeps the highest sequence it saw takes it.
    async with db.transaction():
        await outbox.enqueue_order_event(db, paid["order_id"], "order.refund_pending")
    await deliverer.run_once()
    verified = [d.verify(secret) for d in receiver.snapshot()]
    [latest] = [e for e in verified if e["type"] == "order.refund_pending"]
    assert latest["data"]["sequence"] == 3
