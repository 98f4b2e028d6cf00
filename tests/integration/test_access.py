"""Who may do what: every route's scope, 401 versus 403, revoked and expired keys, actors."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from litestar.routes import HTTPRoute

from h2s_checkout.api.auth import ScopeGuard
from h2s_checkout.app import create_app
from h2s_checkout.domain.access import Scope
from h2s_checkout.flows.api_keys import CACHE_TTL
from h2s_checkout.observability import log_lines
from support import checkout_body, running, signed, stripe_event

# Every route with the scope it needs. A route added to the app fails
# test_every_route_has_its_scope_listed until it is listed here (or in PUBLIC).
ROUTE_SCOPES = {
    "GET /api/checkouts/{ref:str}/timeline": Scope.READ,
    "GET /api/orders/{order_id:str}/timeline": Scope.READ,
    "GET /api/checkouts/{ref:str}": Scope.READ,
    "GET /api/portal/jobs": Scope.READ,
    "GET /debug/checkouts/{ref:str}": Scope.READ,
    "GET /debug": Scope.READ,
    "POST /api/reconcile": Scope.OPERATE,
    "POST /api/orders/{order_id:str}/cancel": Scope.OPERATE,
    "GET /api/orders/{order_id:str}": Scope.READ,
    "POST /api/orders/{order_id:str}/refunds": Scope.OPERATE,
    "POST /api/jobs/{job_id:uuid}/complete": Scope.DISPATCH,
    "POST /api/event-endpoints": Scope.OPERATE,
    "GET /api/event-endpoints": Scope.OPERATE,
    "DELETE /api/event-endpoints/{endpoint_id:str}": Scope.OPERATE,
    "POST /api/event-endpoints/{endpoint_id:str}/rotate-secret": Scope.OPERATE,
    "GET /api/event-endpoints/{endpoint_id:str}/deliveries": Scope.OPERATE,
    "POST /api/event-deliveries/{delivery_id:str}/retry": Scope.OPERATE,
    "POST /api/keys": Scope.ADMIN,
    "GET /api/keys": Scope.ADMIN,
    "DELETE /api/keys/{key_id:uuid}": Scope.ADMIN,
    "POST /api/catalog/items": Scope.CATALOG,
    "GET /api/catalog/items": Scope.CATALOG,
    "GET /api/catalog/items/{sku:str}": Scope.CATALOG,
    "PATCH /api/catalog/items/{sku:str}": Scope.CATALOG,
    "GET /api/catalog/items/{sku:str}/history": Scope.CATALOG,
    "PUT /api/service-area": Scope.CATALOG,
    "GET /api/service-area/history": Scope.CATALOG,
}
# Open to anyone, on purpose (the OpenAPI pages under /schema too).
PUBLIC = {
    "GET /api/catalog",
    "GET /api/service-area",
    "POST /api/checkout",
    "POST /api/stripe/webhook",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "POST /debug/login",
    "POST /debug/logout",
    "GET /checkout/success",
    "GET /checkout/cancel",
}
_PARAM = re.compile(r"\{(\w+):(\w+)\}")
_SAMPLE = {
    "uuid": "00000000-0000-4000-8000-000000000000",
    "str": "ORD-0000000000000000",
    "int": "1",
}


def app_routes(app) -> dict[str, set[Scope]]:
    """'METHOD path' -> the scopes its guards require (OPTIONS and /schema left out)."""
    found: dict[str, set[Scope]] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith("/schema"):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods - {"OPTIONS"}:
                found[f"{method} {route.path}"] = {
                    g.scope for g in handler.resolve_guards() if isinstance(g, ScopeGuard)
                }
    return found


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def make_key(client, admin, name: str, *scopes: str, **extra) -> str:
    answer = await client.post(
        "/api/keys", json={"name": name, "scopes": list(scopes), **extra}, headers=admin
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["key"]


def test_every_route_has_its_scope_listed(settings):
    routes = app_routes(create_app(settings))

    unlisted = sorted(set(routes) - set(ROUTE_SCOPES) - PUBLIC)
    assert not unlisted, (
        f"routes with no entry in ROUTE_SCOPES or PUBLIC: {unlisted}; guard each with "
        "require_scope(Scope...) and list it"
    )
    assert not sorted((set(ROUTE_SCOPES) | PUBLIC) - set(routes)), "listed routes the app lacks"
    wrong = {r: routes[r] for r in ROUTE_SCOPES if routes[r] != {ROUTE_SCOPES[r]}}
    assert not wrong, f"routes whose guard is not the listed scope: {wrong}"
    open_ = {r: routes[r] for r in PUBLIC if routes[r]}
    assert not open_, f"public routes with a scope guard: {open_}"


@pytest.mark.parametrize("route", sorted(ROUTE_SCOPES))
async def test_each_scope_against_each_route(client, admin, route):
    method, path = route.split(" ", 1)
    url = _PARAM.sub(lambda m: _SAMPLE[m.group(2)], path)
    keys = {scope: await make_key(client, admin, f"only-{scope}", scope) for scope in Scope}
    needed = ROUTE_SCOPES[route]

    anonymous = await client.request(method, url)
    assert anonymous.status_code == 401, anonymous.text
    for scope, key in keys.items():
        answer = await client.request(method, url, headers=bearer(key))
        if scope == needed:
            # In: whatever the route then says (404 for the sample id, 400 for no body).
            assert answer.status_code not in (401, 403), (scope, answer.text)
        else:
            assert answer.status_code == 403, (scope, answer.text)
            if path.startswith("/api"):
                assert answer.json()["error"]["code"] == "forbidden"
    assert (await client.request(method, url, headers=admin)).status_code not in (401, 403)


async def test_401_for_no_unknown_or_malformed_credentials_and_403_for_a_missing_scope(
    client, admin
):
    reader = await make_key(client, admin, "reader", "read")
    url = "/api/keys"
    for headers in (
        {},
        bearer("h2s_key_" + "A" * 43),  # well-formed, never issued
        bearer("not-a-key-at-all-0123"),
        {"Authorization": "Basic " + reader},
        {"Authorization": "Bearer"},
    ):
        answer = await client.get(url, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["error"]["code"] == "unauthorized"

    forbidden = await client.get(url, headers=bearer(reader))
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == {
        "code": "forbidden",
        "message": "this key does not have the admin scope",
    }


async def test_a_key_is_shown_once_and_stored_only_as_a_hash(client, admin, db):
    created = await client.post(
        "/api/keys", json={"name": "oncall-ana", "scopes": ["read", "operate"]}, headers=admin
    )
    listed = await client.get("/api/keys", headers=admin)

    body = created.json()
    key = body["key"]
    assert created.status_code == 201
    assert re.fullmatch(r"h2s_key_[A-Za-z0-9_-]{43}", key)
    assert body["api_key"]["scopes"] == ["operate", "read"]
    assert body["api_key"]["created_by"] == "bootstrap"
    assert body["api_key"]["key_hint"] == key[:12]
    assert key not in listed.text
    assert [k["name"] for k in listed.json()["keys"]] == ["oncall-ana"]
    row = await db.fetchrow("select * from h2s_api_keys")
    assert key.encode() not in b"".join(str(v).encode() for v in row.values())
    assert (await client.get("/api/keys", headers=bearer(key))).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "scopes": ["read"]},
        {"name": "has space", "scopes": ["read"]},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"},
        {"name": "x", "scopes": ["read"], "expires_at": "2099-01-01T00:00:00"},
        {"name": "x", "scopes": ["read"], "extra": 1},
    ],
    ids=[
        "empty_name",
        "space",
        "no_scope",
        "unknown_scope",
        "expired",
        "naive_time",
        "unknown_field",
    ],
)
async def test_a_bad_key_request_is_a_400_and_writes_nothing(client, admin, db, body):
    answer = await client.post("/api/keys", json=body, headers=admin)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"
    assert await db.fetchval("select count(*) from h2s_api_keys") == 0


@pytest.mark.parametrize(
    "name",
    [
        "bootstrap",
        "Reconciler",
        "bootstrap.",
        "Boot.Strap",
        "web-hook",
        "WEBHOOK_",
        "cli",
        "cli.ana",
        "CLI-ana",
        "c.l.i",
    ],
)
async def test_a_name_that_reads_as_a_built_in_actor_is_refused(client, admin, db, name):
    """A key named "bootstrap." would read as the bootstrap token in every trace row."""
    answer = await client.post("/api/keys", json={"name": name, "scopes": ["read"]}, headers=admin)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "key_name_reserved"
    assert await db.fetchval("select count(*) from h2s_api_keys") == 0


@pytest.mark.parametrize("name", ["client-app", "bootstrap-2", "webhooks-relay", "clinic"])
async def test_a_name_that_only_begins_like_one_is_taken(client, admin, name):
    assert (await make_key(client, admin, name, "read")).startswith("h2s_key_")


async def test_a_name_in_force_is_taken_until_its_key_is_revoked(client, admin):
    await make_key(client, admin, "ops", "read")
    taken = await client.post("/api/keys", json={"name": "ops", "scopes": ["read"]}, headers=admin)
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "key_name_taken"

    key_id = (await client.get("/api/keys", headers=admin)).json()["keys"][0]["key_id"]
    assert (await client.delete(f"/api/keys/{key_id}", headers=admin)).status_code == 200
    assert (
        await client.post("/api/keys", json={"name": "ops", "scopes": ["read"]}, headers=admin)
    ).status_code == 201


async def test_a_revoked_key_is_refused_at_once_and_its_revocation_recorded(client, admin, db):
    key = await make_key(client, admin, "leaver", "read")
    operator = await make_key(client, admin, "key-admin", "admin")
    assert (await client.get("/api/portal/jobs", headers=bearer(key))).status_code == 200
    key_id = await db.fetchval("select key_id from h2s_api_keys where name = 'leaver'")

    revoked = await client.delete(f"/api/keys/{key_id}", headers=bearer(operator))
    again = await client.delete(f"/api/keys/{key_id}", headers=admin)

    assert revoked.status_code == 200
    assert revoked.json()["revoked_by"] == "key-admin"
    assert again.json()["revoked_by"] == "key-admin"  # revoking twice changes nothing
    answer = await client.get("/api/portal/jobs", headers=bearer(key))
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    missing = await client.delete(f"/api/keys/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404


async def test_another_replica_stops_taking_a_revoked_key_within_the_cache_ttl(
    client, admin, settings, clock
):
    """Each replica caches a key for CACHE_TTL: the bound on revocation elsewhere."""
    key = await make_key(client, admin, "leaver", "read")
    other = create_app(settings, clock=clock)
    async with running(other):
        other_ring = other.state.key_ring
        assert await other_ring.from_key(key) is not None  # cached on the other replica
        key_id = (await client.get("/api/keys", headers=admin)).json()["keys"][0]["key_id"]
        await client.delete(f"/api/keys/{key_id}", headers=admin)

        assert (await client.get("/api/portal/jobs", headers=bearer(key))).status_code == 401
        assert await other_ring.from_key(key) is not None  # still within its TTL
        clock.advance(seconds=CACHE_TTL.total_seconds())
        assert await other_ring.from_key(key) is None


async def test_an_expired_key_is_refused(client, admin, clock):
    expires = (clock.now + timedelta(minutes=10)).isoformat()
    key = await make_key(client, admin, "contractor", "read", expires_at=expires)
    assert (await client.get("/api/portal/jobs", headers=bearer(key))).status_code == 200

    clock.advance(minutes=10)

    answer = await client.get("/api/portal/jobs", headers=bearer(key))
    assert answer.status_code == 401


async def test_last_use_is_written_at_most_once_a_minute(client, admin, db, clock):
    key = await make_key(client, admin, "reader", "read")
    used = "select last_used_at from h2s_api_keys"
    assert await db.fetchval(used) is None

    await client.get("/api/portal/jobs", headers=bearer(key))
    first = await db.fetchval(used)
    clock.advance(seconds=30)  # past the cache, within the minute
    await client.get("/api/portal/jobs", headers=bearer(key))
    unchanged = await db.fetchval(used)
    clock.advance(seconds=31)
    await client.get("/api/portal/jobs", headers=bearer(key))

    assert first == unchanged
    assert await db.fetchval(used) == clock.now


async def test_the_bootstrap_token_keeps_every_scope(client, admin):
    for method, url in (
        ("GET", "/api/portal/jobs"),
        ("POST", "/api/reconcile"),
        ("GET", "/api/keys"),
    ):
        assert (await client.request(method, url, headers=admin)).status_code == 200


async def test_a_manual_reconcile_names_its_key_in_trace_rows_and_log_line(
    client, admin, db, stripe, clock, capfd
):
    key = await make_key(client, admin, "oncall-bo", "operate")
    body = (await client.post("/api/checkout", json=checkout_body())).json()
    stripe.complete_session(body["pay"]["session_id"])  # paid, the event lost
    clock.advance(minutes=63)
    capfd.readouterr()

    answer = await client.post("/api/reconcile", headers=bearer(key))

    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "actor": "oncall-bo", "actions": {"session_paid": 1}}
    pay = await db.fetchrow("select detail from h2s_checkout_traces where event = 'pay'")
    assert pay["detail"]["actor"] == "oncall-bo"
    assert pay["detail"]["source"] == "reconciler"
    log_lines.flush()  # what this loop holds (log_lines.FLUSH_INTERVAL_S)
    logged = [line for line in capfd.readouterr().err.splitlines() if "reconcile.pass" in line]
    assert len(logged) == 1
    assert '"actor":"oncall-bo"' in logged[0]


async def test_the_background_pass_names_itself(client, db, stripe, clock):
    body = (await client.post("/api/checkout", json=checkout_body())).json()
    stripe.complete_session(body["pay"]["session_id"])
    clock.advance(minutes=63)

    await client.app.state.reconciler.run_once()

    detail = await db.fetchval("select detail from h2s_checkout_traces where event = 'pay'")
    assert detail["actor"] == "reconciler"
    created = await db.fetch(
        "select detail from h2s_checkout_traces where event in ('queue_job', 'create_session')"
    )
    assert [r["detail"].get("actor") for r in created] == [None, None]  # the storefront's


async def test_a_webhook_event_names_itself(client, db, stripe):
    body = (await client.post("/api/checkout", json=checkout_body())).json()
    session = stripe.complete_session(body["pay"]["session_id"])
    payload, headers = signed(stripe_event("checkout.session.completed", session))

    assert (await client.post("/api/stripe/webhook", content=payload, headers=headers)).json()[
        "result"
    ] == "paid"

    detail = await db.fetchval("select detail from h2s_checkout_traces where event = 'pay'")
    assert detail["actor"] == "webhook"


async def test_a_cancel_made_with_a_named_key_names_it_in_the_trace(client, admin, db):
    key = await make_key(client, admin, "support-cy", "operate")
    body = (await client.post("/api/checkout", json=checkout_body())).json()

    answer = await client.post(
        f"/api/orders/{body['order_id']}/cancel",
        json={"reason": "requested_by_customer"},
        headers=bearer(key),
    )

    assert answer.status_code in (200, 202), answer.text
    actors = await db.fetch(
        "select detail->>'actor' as actor from h2s_checkout_traces"
        " where checkout_id = $1 and detail ? 'actor'",
        uuid.UUID(body["checkout_trace_id"]),
    )
    assert {r["actor"] for r in actors} == {"support-cy"}


async def test_options_lists_every_method_of_a_path(client, admin):
    """Litestar 2 listed only a path's first method (api/allow.py)."""
    answer = await client.options("/api/keys", headers=admin)
    assert answer.status_code == 204
    assert answer.headers["allow"] == "GET, OPTIONS, POST"
    one = await client.options(f"/api/keys/{uuid.uuid4()}", headers=admin)
    assert one.headers["allow"] == "DELETE, OPTIONS"
