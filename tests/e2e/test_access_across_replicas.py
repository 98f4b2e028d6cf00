"""Two server processes on one database: limits are global, sessions known to both."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
import pytest

from support import ADMIN_TOKEN, checkout_body, table_counts

pytestmark = pytest.mark.slow


def clear_of_a_window_edge(margin_s: float = 25) -> None:
    """The servers count in windows of the wall clock's minutes (and quarter hours for
    sign-ins): start where the next edge is more than the test's length away."""
    left = 60 - datetime.now(UTC).second - datetime.now(UTC).microsecond / 1e6
    if left < margin_s:
        time.sleep(left + 0.5)


async def test_the_checkout_limit_is_global_and_a_replay_is_never_refused(servers, db, stripe):
    env = {"H2S_LIMIT_CHECKOUTS_PER_MINUTE_IP": "4", "H2S_RECONCILE_INTERVAL_S": "0"}
    replicas = [servers(**env), servers(**env)]
    clear_of_a_window_edge()
    async with httpx.AsyncClient(timeout=30) as http:
        answers = await asyncio.gather(
            *(
                http.post(
                    f"{replicas[n % 2].url}/api/checkout",
                    json=checkout_body(email=f"shopper{n}@example.com"),
                )
                for n in range(10)
            )
        )
        counts = await table_counts(db)
        first = next(n for n, a in enumerate(answers) if a.status_code == 201)
        replay = await http.post(
            f"{replicas[1].url}/api/checkout",
            json=checkout_body(email=f"shopper{first}@example.com"),
        )

    statuses = sorted(a.status_code for a in answers)
    refused = [a for a in answers if a.status_code == 429]
    assert statuses == [201] * 4 + [429] * 6
    for answer in refused:
        assert answer.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert counts["h2s_orders"] == 4
    assert counts["h2s_checkouts"] == 4
    assert counts["h2s_recipients"] == 4
    assert len(stripe.sessions) == 4
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == answers[first].json()


async def test_a_session_made_on_one_replica_is_honoured_and_ended_on_the_other(servers, db):
    env = {"H2S_LIMIT_LOGIN_FAILURES": "3", "H2S_RECONCILE_INTERVAL_S": "0"}
    a, b = servers(**env), servers(**env)
    clear_of_a_window_edge()
    async with httpx.AsyncClient(timeout=30) as http:
        signed_in = await http.post(f"{a.url}/debug/login", data={"token": ADMIN_TOKEN})
        session = {"Cookie": f"h2s_session={signed_in.cookies['h2s_session']}"}
        on_b = await http.get(f"{b.url}/debug", headers=session)
        await http.post(f"{b.url}/debug/logout", headers=session)
        on_a_after = await http.get(f"{a.url}/debug", headers=session)

        # Not an API key: a try at the bootstrap token, whose bucket the right one shares.
        wrong = "not-the-bootstrap-token"
        failures = [
            await http.post(f"{url}/debug/login", data={"token": wrong})
            for url in (a.url, b.url, a.url)
        ]
        locked = await http.post(f"{b.url}/debug/login", data={"token": ADMIN_TOKEN})

    assert signed_in.status_code == 303
    assert on_b.status_code == 200
    assert "Signed in as bootstrap" in on_b.text
    assert on_a_after.status_code == 401
    assert [f.status_code for f in failures] == [401, 401, 401]
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
    assert await db.fetchval("select count(*) from h2s_admin_sessions") == 0
