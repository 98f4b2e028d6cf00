"""The delivery loop in the app's lifespan: woken by NOTIFY after a commit, not by its poll;
the subscriber set by the environment."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from events_receiver import EventReceiver
from h2s_checkout.domain.events import new_secret
from h2s_checkout.flows.event_delivery import DeliverySettings, EventDeliverer
from h2s_checkout.flows.event_endpoints import ENVIRONMENT_ENDPOINT_ID, sync_environment_endpoint
from support import checkout_body


@pytest.fixture
def settings(settings):
    # A poll far longer than the test waits: only the NOTIFY can bring the event out.
    return settings.with_overrides(events_poll_s=60.0)


async def test_a_commit_wakes_the_loop_and_the_event_goes_out(client, admin):
    with EventReceiver() as receiver:
        made = await client.post("/api/event-endpoints", json={"url": receiver.url}, headers=admin)
        secret = made.json()["secret"]
        answer = await client.post("/api/checkout", json=checkout_body())
        assert answer.status_code == 201

        [delivery] = await receiver.until(1, timeout=20)

    event = delivery.verify(secret)
    assert (event["type"], event["data"]["order"]["order_id"]) == (
        "order.created",
        answer.json()["order_id"],
    )


async def test_the_environment_endpoint_follows_the_environment(client, db):
    pool = client.app.state.db_pool
    secret = new_secret()

    await sync_environment_endpoint(pool, "http://127.0.0.1:9/env", secret)
    await sync_environment_endpoint(pool, "http://127.0.0.1:9/env", secret)  # every replica
    row = await db.fetchrow("select * from h2s_event_endpoints")
    assert (row["endpoint_id"], row["status"], row["source"]) == (
        ENVIRONMENT_ENDPOINT_ID,
        "enabled",
        "environment",
    )
    assert (row["url"], row["secret"]) == ("http://127.0.0.1:9/env", secret)

    await sync_environment_endpoint(pool, None, None)
    row = await db.fetchrow("select * from h2s_event_endpoints")
    assert row["status"] == "disabled"
    assert "no longer set" in row["status_reason"]


async def test_the_loop_ends_when_a_wake_up_and_the_shutdown_land_together(database_url, db):
    """A NOTIFY arriving in the tick the app stops must not keep the loop alive: on Python
    3.11 asyncio.wait_for swallowed that cancel and the shutdown waited a poll, then forever."""
    deliverer = EventDeliverer(
        database_url, DeliverySettings(poll_interval=timedelta(seconds=60)), listen_dsn=database_url
    )

    async def start_then_stop() -> None:
        async with deliverer.running():
            await asyncio.sleep(0.5)  # the loop is waiting for a wake-up or its poll
            deliverer._wake.set()  # what the NOTIFY listener does
        # Leaving the context cancels the loop in the same tick the wake-up lands.

    stopping = asyncio.create_task(start_then_stop())
    done, _ = await asyncio.wait({stopping}, timeout=20)
    if not done:
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)
    assert done, "the delivery loop outlived its context: the shutdown hung"
    stopping.result()
