"""Exactly once across processes: parallel duplicates, and crashes between phases."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from support import checkout_body

pytestmark = pytest.mark.slow

CREATE = "POST /v1/checkout/sessions"


async def counts(db) -> tuple[int, int, int]:
    return (
        await db.fetchval("select count(*) from h2s_orders"),
        await db.fetchval("select count(*) from h2s_dispatch_jobs"),
        await db.fetchval("select count(*) from h2s_checkouts where state <> 'cleaned'"),
    )


async def post_until_answered(http: httpx.AsyncClient, url: str, body, headers, attempts=20):
    """What a well-behaved storefront does: follow 409 Retry-After until an answer."""
    for _ in range(attempts):
        answer = await http.post(f"{url}/api/checkout", json=body, headers=headers)
        if answer.status_code != 409:
            return answer
        await asyncio.sleep(float(answer.headers["retry-after"]))
    raise AssertionError("still 409 after retries")


@pytest.mark.parametrize("key", [None, "race-key-1"], ids=["derived_key", "client_key"])
async def test_50_parallel_duplicates_over_two_processes_make_one_checkout(
    servers, db, stripe, key
):
    urls = [servers().url, servers().url]
    # Slow Stripe a little, so that many duplicates arrive while the first is in flight.
    stripe.faults.add("latency", CREATE, seconds=0.5)
    headers = {"Idempotency-Key": key} if key else {}
    body = checkout_body(email="race@example.com")

    async with httpx.AsyncClient(timeout=30) as http:
        answers = await asyncio.gather(
            *(
                http.post(f"{urls[i % 2]}/api/checkout", json=body, headers=headers)
                for i in range(50)
            )
        )
        statuses = sorted({a.status_code for a in answers})
        assert set(statuses) <= {201, 409}, [a.text for a in answers if a.status_code >= 500]
        conflicts = [a for a in answers if a.status_code == 409]
        assert all(int(a.headers["retry-after"]) >= 1 for a in conflicts)
        created = [a.json() for a in answers if a.status_code == 201]
        assert created
        assert all(c == created[0] for c in created)
        # Those told to come back get the same stored answer.
        for i, _ in enumerate(conflicts):
            retried = await post_until_answered(http, urls[i % 2], body, headers)
            assert retried.status_code == 201
            assert retried.json() == created[0]

    assert await counts(db) == (1, 1, 1)
    assert len(stripe.sessions) == 1


@pytest.mark.parametrize(
    "processed", [False, True], ids=["killed_after_phase_1", "killed_after_phase_2"]
)
async def test_a_checkout_killed_between_phases_is_resumed_by_a_retry(
    servers, db, stripe, processed
):
    # processed=False: the server dies while Stripe has not acted (after phase 1).
    # processed=True: Stripe made the session, the server died before linking it (phase 2).
    stripe.faults.add("timeout", CREATE, seconds=30, processed=processed)
    first = servers(H2S_CHECKOUT_LEASE_S="2")
    body = checkout_body(email="crash@example.com")

    async with httpx.AsyncClient(timeout=60) as http:
        doomed = asyncio.create_task(http.post(f"{first.url}/api/checkout", json=body))
        deadline = time.monotonic() + 20
        while not stripe.find_requests(CREATE) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        first.kill()
        with pytest.raises(httpx.HTTPError):
            await doomed
        stripe.faults.clear()
        assert (await db.fetchval("select state from h2s_checkouts")) == "job_queued"

        second = servers(H2S_CHECKOUT_LEASE_S="2")
        answer = await post_until_answered(http, second.url, body, {})

    assert answer.status_code == 201, answer.text
    assert await counts(db) == (1, 1, 1)
    assert len(stripe.sessions) == 1
    assert len({r.idempotency_key for r in stripe.find_requests(CREATE)}) == 1
    order = await db.fetchrow("select * from h2s_orders")
    assert order["session_id"] == answer.json()["pay"]["session_id"]
    resumed = await db.fetchval(
        "select count(*) from h2s_checkout_traces where event = 'checkout.resumed'"
    )
    assert resumed == 1


async def test_a_server_killed_after_phase_3_leaves_an_answer_to_replay(servers, db, stripe):
    first = servers()
    body = checkout_body(email="after3@example.com")
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(f"{first.url}/api/checkout", json=body)
        first.kill()
        second = servers()
        replay = await http.post(f"{second.url}/api/checkout", json=body)

    assert answer.status_code == replay.status_code == 201
    assert replay.json() == answer.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert await counts(db) == (1, 1, 1)
    assert len(stripe.sessions) == 1
