"""The debug page's sign-in: a server-side session whose cookie never holds a key, ended by
sign-out, by 8 hours idle and by revoking its key, known to every replica; failed
sign-ins limited per client address."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest

from h2s_checkout.flows.reaper import reap_sessions_and_counters
from support import ADMIN_TOKEN, app_client, checkout_body

COOKIE = "h2s_session"


async def make_key(client, admin, name: str, *scopes: str) -> str:
    answer = await client.post(
        "/api/keys", json={"name": name, "scopes": list(scopes)}, headers=admin
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["key"]


async def sign_in(client, key: str, **headers: str) -> httpx.Response:
    return await client.post("/debug/login", data={"token": key}, headers=headers)


def with_cookie(session_id: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={session_id}"}


async def test_signing_in_sets_a_random_session_id_and_never_the_key(client, admin, db):
    key = await make_key(client, admin, "reader", "read")

    answer = await sign_in(client, key, referer="http://testserver/debug/checkouts/abc?x=1")

    assert answer.status_code == 303
    assert answer.headers["location"] == "/debug/checkouts/abc?x=1"
    cookie = answer.headers["set-cookie"]
    session_id = re.match(rf"{COOKIE}=([0-9a-f]{{64}});", cookie).group(1)
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/debug", "max-age=28800"} <= attributes
    assert "secure" not in attributes  # PUBLIC_BASE_URL is http here
    key_hash = hashlib.sha256(key.encode()).hexdigest()
    assert key not in cookie
    assert key_hash not in cookie
    row = await db.fetchrow("select * from h2s_admin_sessions")
    assert row["session_hash"] == hashlib.sha256(session_id.encode()).digest()
    assert key.encode() not in row["data"]
    page = await client.get("/debug")
    assert page.status_code == 200
    assert "Signed in as reader" in page.text


async def test_the_bootstrap_token_signs_in_without_landing_in_the_cookie(client):
    answer = await sign_in(client, ADMIN_TOKEN)
    assert answer.status_code == 303
    assert ADMIN_TOKEN not in answer.headers["set-cookie"]
    assert "Signed in as bootstrap" in (await client.get("/debug")).text


async def test_the_cookie_is_secure_when_the_public_address_is_https(settings, db, clock):
    async with app_client(
        settings.with_overrides(public_base_url="https://shop.example"), clock
    ) as c:
        answer = await sign_in(c, ADMIN_TOKEN)
    assert "secure" in {a.strip().lower() for a in answer.headers["set-cookie"].split(";")}


async def test_pages_without_a_session_write_nothing_and_set_no_cookie(client, db):
    answer = await client.get("/debug")
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers
    assert (await client.get("/api/catalog")).headers.get("set-cookie") is None
    assert await db.fetchval("select count(*) from h2s_admin_sessions") == 0


async def test_a_wrong_key_and_a_key_without_read_open_no_session(client, admin, db):
    operator = await make_key(client, admin, "operator", "operate")

    wrong = await sign_in(client, "h2s_key_" + "B" * 43)
    no_read = await sign_in(client, operator)

    assert wrong.status_code == 401
    assert "That key is not right." in wrong.text
    assert no_read.status_code == 403
    assert "read scope" in no_read.text
    assert "set-cookie" not in wrong.headers
    assert "set-cookie" not in no_read.headers
    assert await db.fetchval("select count(*) from h2s_admin_sessions") == 0


async def test_a_session_ends_at_sign_out(client, db):
    session_id = (await sign_in(client, ADMIN_TOKEN)).cookies[COOKIE]

    out = await client.post("/debug/logout")

    assert out.status_code == 303
    assert out.headers["set-cookie"].startswith(f'{COOKIE}="";')
    assert "max-age=0" in out.headers["set-cookie"].lower()
    assert await db.fetchval("select count(*) from h2s_admin_sessions") == 0
    client.cookies.clear()
    replayed = await client.get("/debug", headers=with_cookie(session_id))
    assert replayed.status_code == 401
    assert "input" in replayed.text  # the sign-in form


async def test_a_session_ends_after_eight_hours_idle_and_activity_keeps_it(client, db, clock):
    await sign_in(client, ADMIN_TOKEN)

    clock.advance(hours=7, minutes=59)
    assert (await client.get("/debug")).status_code == 200  # a visit renews it
    clock.advance(hours=7, minutes=59)
    assert (await client.get("/debug")).status_code == 200
    clock.advance(hours=8)

    assert (await client.get("/debug")).status_code == 401


async def test_revoking_a_key_ends_its_sessions(client, admin, db):
    key = await make_key(client, admin, "leaver", "read")
    await sign_in(client, key)
    assert (await client.get("/debug")).status_code == 200
    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=client.app), base_url="http://testserver"
    )
    async with other:
        await sign_in(other, ADMIN_TOKEN)  # another person's session stays
        key_id = await db.fetchval("select key_id from h2s_api_keys")

        await client.delete(f"/api/keys/{key_id}", headers=admin)

        assert (await client.get("/debug")).status_code == 401
        assert (await other.get("/debug")).status_code == 200
    assert await db.fetchval("select count(*) from h2s_admin_sessions") == 1


async def test_a_second_replica_honours_a_session_made_by_the_first(client, admin, settings, clock):
    body = (await client.post("/api/checkout", json=checkout_body())).json()
    session_id = (await sign_in(client, ADMIN_TOKEN)).cookies[COOKIE]

    async with app_client(settings, clock) as replica:
        page = await replica.get(
            f"/debug/checkouts/{body['checkout_trace_id']}", headers=with_cookie(session_id)
        )

    assert page.status_code == 200
    assert body["order_id"] in page.text


async def test_failed_sign_ins_with_one_key_are_limited_and_a_right_one_is_not_counted(
    settings, admin, db, clock
):
    async with app_client(settings.with_overrides(limit_login_failures=3), clock) as c:
        key = await make_key(c, admin, "reader", "read")
        # Wrong keys with the right key's hint: its bucket, as one person mistyping it.
        wrong = key[:12] + "C" * 43
        assert (await sign_in(c, wrong)).status_code == 401
        assert (await sign_in(c, wrong)).status_code == 401
        assert (await sign_in(c, key)).status_code == 303  # gives its attempt back
        assert (await sign_in(c, wrong)).status_code == 401
        before = await db.fetchval("select count(*) from h2s_admin_sessions")

        refused = await sign_in(c, wrong)
        right_but_refused = await sign_in(c, key)

        for answer in (refused, right_but_refused):
            assert answer.status_code == 429
            assert 1 <= int(answer.headers["retry-after"]) <= 15 * 60
            assert "Too many attempts" in answer.text
        assert await db.fetchval("select count(*) from h2s_admin_sessions") == before
        clock.advance(minutes=15)
        assert (await sign_in(c, key)).status_code == 303


async def test_other_peoples_failures_from_one_address_do_not_lock_a_right_key_out(
    settings, admin, db, clock
):
    """Behind a proxy we do not trust, every person signs in from its address: someone
    trying key after key there must not lock everyone else out."""
    async with app_client(settings.with_overrides(limit_login_failures=3), clock) as c:
        key = await make_key(c, admin, "reader", "read")
        guesses = ["h2s_key_" + f"{n:04d}" + "G" * 39 for n in range(30)]
        answers = [(await sign_in(c, guess)).status_code for guess in guesses]

        mine = await sign_in(c, key)
        page = await c.get("/debug")

    assert answers == [401] * 30  # each guess another key: each its own bucket
    assert mine.status_code == 303
    assert "Signed in as reader" in page.text


async def test_failures_with_no_key_lock_only_the_bootstrap_token(settings, admin, db, clock):
    """Anything that is not an API key can only be a try at the bootstrap token, the one
    secret a person may have made guessable: those share one bucket per address, and once
    it is used up even the right token waits; named keys sign in meanwhile."""
    async with app_client(settings.with_overrides(limit_login_failures=3), clock) as c:
        key = await make_key(c, admin, "reader", "read")
        tries = [(await sign_in(c, f"guess-{n}")).status_code for n in range(3)]

        token = await sign_in(c, ADMIN_TOKEN)
        named = await sign_in(c, key)

    assert tries == [401] * 3
    assert token.status_code == 429
    assert named.status_code == 303


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain is another party's page
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame, a data: URL
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},
    ],
    ids=["cross-site", "same-site", "another origin", "opaque origin", "fetch metadata first"],
)
async def test_a_sign_in_posted_from_another_site_is_refused(client, admin, db, headers):
    """Sign-in CSRF: a page elsewhere auto-posts its own key, and the victim's next visit
    would show "Signed in as attacker"."""
    attacker = await make_key(client, admin, "attacker", "read")

    answer = await sign_in(client, attacker, **headers)
    out = await client.post("/debug/logout", headers=headers)

    for refused in (answer, out):
        assert refused.status_code == 403
        assert "data-code='cross_site_request'" in refused.text
        assert "set-cookie" not in refused.headers
    assert await db.fetchval("select count(*) from h2s_admin_sessions") == 0
    assert "Signed in as attacker" not in (await client.get("/debug")).text


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
        {"Sec-Fetch-Site": "none"},  # typed or bookmarked
        {"Origin": "http://testserver"},  # the request's own host
        {"Origin": "http://shop.test"},  # PUBLIC_BASE_URL's, behind a proxy
        {},  # no browser: curl with the key
    ],
    ids=["same-origin", "none", "own host", "public base url", "no browser"],
)
async def test_a_sign_in_from_our_own_form_is_taken(client, db, headers):
    answer = await sign_in(client, ADMIN_TOKEN, **headers)

    assert answer.status_code == 303, answer.text
    assert await db.fetchval("select count(*) from h2s_admin_sessions") == 1


async def test_the_reaper_purges_ended_sessions_and_past_windows(client, db, clock):
    await sign_in(client, ADMIN_TOKEN)
    await sign_in(client, "not-the-token")  # a failure: the token's counter row
    pool = client.app.state.db_pool
    assert await reap_sessions_and_counters(pool, clock) == (0, 0)  # all still current

    clock.advance(hours=8)

    assert await reap_sessions_and_counters(pool, clock) == (1, 1)
    assert await db.fetchval("select count(*) from h2s_admin_sessions") == 0
    assert await db.fetchval("select count(*) from h2s_rate_counters") == 0
