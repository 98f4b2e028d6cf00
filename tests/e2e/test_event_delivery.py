"""Outbound events across real processes: a server killed with an attempt in flight, two
servers sharing one outbox, and `h2s-checkout listen` as the receiver."""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
import time

import httpx
import pytest

from events_receiver import EventReceiver
from h2s_checkout.domain.events import new_secret, signature_header
from servers import free_port
from support import ADMIN_TOKEN, checkout_body

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EVENTS_ENV = {"H2S_EVENTS_ALLOW_PRIVATE": "true", "H2S_EVENTS_TIMEOUT_S": "2"}


async def wait_for(db, query: str, expected, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while (value := await db.fetchval(query)) != expected:
        assert time.monotonic() < deadline, f"{query!r} is {value!r}, not {expected!r}"
        await asyncio.sleep(0.2)
    return value


async def test_an_event_whose_server_was_killed_mid_attempt_is_delivered_after_restart(
    servers, db, stripe
):
    with EventReceiver([("sleep", 60)]) as receiver:  # holds the first attempt
        first = servers(**EVENTS_ENV)
        async with httpx.AsyncClient(timeout=30) as http:
            made = await http.post(
                f"{first.url}/api/event-endpoints", json={"url": receiver.url}, headers=ADMIN
            )
            secret = made.json()["secret"]
            answer = await http.post(f"{first.url}/api/checkout", json=checkout_body())
            assert answer.status_code == 201

        await receiver.until(1)
        first.kill()  # committed, sent, never answered, nothing recorded
        delivery = await db.fetchrow("select * from h2s_event_deliveries")
        assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
        assert await db.fetchval("select count(*) from h2s_event_attempts") == 0

        servers(**EVENTS_ENV)  # a new process takes the delivery once its lease ends
        sent = await receiver.until(2, timeout=60)
        await wait_for(db, "select status from h2s_event_deliveries", "delivered")

    assert sent[0].webhook_id == sent[1].webhook_id
    event = sent[1].verify(secret)
    assert (event["type"], event["data"]["order"]["order_id"]) == (
        "order.created",
        answer.json()["order_id"],
    )


async def test_two_servers_send_each_attempt_once(servers, db, stripe):
    with EventReceiver() as receiver:
        urls = [servers(**EVENTS_ENV).url, servers(**EVENTS_ENV).url]
        async with httpx.AsyncClient(timeout=30) as http:
            made = await http.post(
                f"{urls[0]}/api/event-endpoints", json={"url": receiver.url}, headers=ADMIN
            )
            assert made.status_code == 201
            answers = await asyncio.gather(
                *(
                    http.post(
                        f"{urls[i % 2]}/api/checkout",
                        json=checkout_body(email=f"two{i}@example.com"),
                    )
                    for i in range(20)
                )
            )
        assert {a.status_code for a in answers} == {201}

        await wait_for(
            db, "select count(*) from h2s_event_deliveries where status = 'delivered'", 20
        )
        await asyncio.sleep(2)  # two poll intervals: a second sender would show by now
        sent = receiver.snapshot()

    assert len(sent) == 20
    assert len({d.webhook_id for d in sent}) == 20
    assert await db.fetchval("select count(*) from h2s_event_attempts") == 20
    assert await db.fetchval("select max(attempts) from h2s_event_deliveries") == 1


def read_lines(stream, into: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        into.put(line.rstrip("\n"))


async def test_listen_prints_each_verified_event_and_refuses_a_forged_one(
    client, admin, db, stripe
):
    endpoint_port = free_port()
    made = await client.post(
        "/api/event-endpoints",
        json={"url": f"http://127.0.0.1:{endpoint_port}/events"},
        headers=admin,
    )
    secret = made.json()["secret"]
    listener = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "h2s_checkout",
            "listen",
            "--port",
            str(endpoint_port),
            "--secret",
            secret,
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed: queue.Queue[str] = queue.Queue()
    complaints: queue.Queue[str] = queue.Queue()
    threading.Thread(target=read_lines, args=(listener.stdout, printed), daemon=True).start()
    threading.Thread(target=read_lines, args=(listener.stderr, complaints), daemon=True).start()
    try:
        assert "listening on" in complaints.get(timeout=30)
        answer = await client.post("/api/checkout", json=checkout_body())
        assert await client.app.state.event_deliverer.run_once() == {"delivered": 1}
        line = printed.get(timeout=10)

        body = b'{"type":"order.paid"}'
        now = int(time.time())
        forged = httpx.post(
            f"http://127.0.0.1:{endpoint_port}/events",
            content=body,
            headers={
                "webhook-id": "evt_forged",
                "webhook-timestamp": str(now),
                "webhook-signature": signature_header([new_secret()], "evt_forged", now, body),
            },
        )
        assert forged.status_code == 400
        assert complaints.get(timeout=10).startswith("rejected:")
    finally:
        listener.terminate()
        listener.wait(timeout=10)

    event = json.loads(line)
    assert event["type"] == "order.created"
    assert event["data"]["order"]["order_id"] == answer.json()["order_id"]
    assert printed.empty()  # the forged one was not printed
    stored = await db.fetchval("select body from h2s_events")
    assert event == stored
