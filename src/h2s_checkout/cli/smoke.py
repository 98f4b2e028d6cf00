"""`h2s-checkout smoke`: N real checkouts, each verified end to end through the API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from h2s_checkout.domain.access import key_hint, looks_like_key

ORDERS_WITHOUT_JOBS = """
select count(*)
from h2s_orders o
left join h2s_dispatch_jobs j on j.order_id = o.order_id
where o.created_at > now() - interval '1 hour' and j.job_id is null
"""


class SmokeFailure(AssertionError):
    pass


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def throwaway_serve() -> Iterator[tuple[str, str]]:
    """Start `h2s-checkout serve` on a private data dir; yield (base url, admin token)."""
    with tempfile.TemporaryDirectory(prefix="h2s-smoke-") as data_dir:
        port = _free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "STRIPE_API_BASE", "STRIPE_API_KEY", "H2S_ADMIN_TOKEN")
        }
        env.update(H2S_DATA_DIR=data_dir, PORT=str(port), H2S_LOG_FORMAT="json")
        log_path = Path(data_dir) / "serve.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "h2s_checkout", "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise SmokeFailure(f"server exited: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SmokeFailure("server did not become ready in 60 s")
                time.sleep(0.2)
            token = (Path(data_dir) / "admin-token").read_text().strip()
            yield base_url, token
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def served_address(area: dict[str, Any]) -> tuple[str, str]:
    """(country, postal code) of an address inside the deployment's service area (GET
    /api/service-area): Austin's when it serves everywhere, else the first area's first
    prefix, filled out to a code."""
    areas = area.get("areas") or []
    if not areas:
        return "US", "78701"
    prefix = str(areas[0]["postal_code_prefixes"][0])
    return str(areas[0]["country"]), prefix + "0" * max(0, 5 - len(prefix))


def _customer(i: int, run: str, where: tuple[str, str] = ("US", "78701")) -> dict[str, Any]:
    return {
        "email": f"smoke+{run}-{i}@example.com",
        "name": f"Smoke Test {i}",
        "phone": "+15555550100",
        "address": {
            "line1": "1 Main St",
            "city": "Austin",
            "state": "TX",
            "postal_code": where[1],
            "country": where[0],
        },
    }


def check_one(
    client: httpx.Client,
    i: int,
    run: str,
    skus: list[str],
    where: tuple[str, str] = ("US", "78701"),
) -> None:
    body = {
        "customer": _customer(i, run, where),
        "items": [{"sku": skus[i % len(skus)], "quantity": 1}],
    }
    answer = client.post("/api/checkout", json=body)
    _expect(answer.status_code == 201, f"checkout answered {answer.status_code}: {answer.text}")
    _expect("no-store" in answer.headers.get("cache-control", ""), "no Cache-Control: no-store")
    result = answer.json()
    _expect(result.get("ok") is True, "ok is not true")
    order_id, job_id = result["order_id"], result["job_id"]
    session_id = result["pay"]["session_id"]
    _expect(order_id.startswith("ORD-"), f"order id {order_id!r}")
    _expect(str(uuid.UUID(job_id)) == job_id, f"job id {job_id!r} is not a uuid")
    _expect(session_id.startswith("cs_"), f"session id {session_id!r}")
    _expect(bool(result["pay"]["session_url"]), "no session url")

    view = client.get(f"/api/checkouts/{result['checkout_trace_id']}")
    _expect(view.status_code == 200, f"checkout view answered {view.status_code}")
    v = view.json()
    provider = v["provider_session"] or {}
    _expect(provider.get("found") is True, "the session is not found at the payment provider")
    _expect(provider["id"] == session_id, "provider session id differs")
    _expect(provider["client_reference_id"] == order_id, "session not linked to the order")
    _expect(provider["metadata"].get("job_id") == job_id, "session metadata lacks the job id")
    _expect(provider["status"] == "open", f"session status {provider['status']!r}")
    order, job = v["order"], v["job"]
    _expect(order is not None and order["order_id"] == order_id, "order missing")
    _expect(order["session_id"] == session_id, "order not linked to the session")
    _expect(order["metadata_json"].get("dispatch_job_id") == job_id, "order lacks its job id")
    _expect(job is not None and job["job_id"] == job_id, "dispatch job missing")
    _expect(job["order_id"] == order_id, "job not linked to the order")
    _expect(job["status"] == "queued", f"job status {job['status']!r}")

    timeline = client.get(f"/api/checkouts/{result['checkout_trace_id']}/timeline")
    _expect(timeline.status_code == 200, f"timeline answered {timeline.status_code}")
    _expect(timeline.json()["state"] == "session_created", "checkout not in session_created")


def _orders_without_jobs(database_url: str) -> int:
    async def count() -> int:
        # One statement, no cache: DATABASE_URL may lead to a transaction pooler.
        conn = await asyncpg.connect(database_url, statement_cache_size=0)
        try:
            return int(await conn.fetchval(ORDERS_WITHOUT_JOBS))
        finally:
            await conn.close()

    return asyncio.run(count())


def token_hint(token: str | None) -> str:
    """What the output says of the credential: a key's hint, as key lists show it, and of
    any other token only its length. Never the token itself."""
    if not token:
        return "nobody"
    if looks_like_key(token):
        return f"key {key_hint(token)}…"
    return f"a token of {len(token)} characters"


def run_against(base_url: str, count: int, token: str | None, database_url: str | None) -> int:
    run = uuid.uuid4().hex[:8]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    passed = 0
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        try:
            catalog = client.get("/api/catalog")
        except httpx.HTTPError as exc:
            print(f"cannot reach {base_url}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        if catalog.status_code != 200:
            print(f"catalog answered {catalog.status_code}; cannot run", file=sys.stderr)
            return 1
        skus = [item["sku"] for item in catalog.json()["items"]]
        # The storefront's copy is revalidated by its ETag, and answered 304 unchanged.
        again = client.get(
            "/api/catalog", headers={"If-None-Match": catalog.headers.get("etag", "")}
        )
        changed = again.status_code == 200 and again.headers.get("etag") != catalog.headers.get(
            "etag"
        )
        if again.status_code != 304 and not changed:
            print(f"catalog revalidation answered {again.status_code}, not 304", file=sys.stderr)
            return 1
        area = client.get("/api/service-area")
        if area.status_code != 200:
            print(f"service area answered {area.status_code}; cannot run", file=sys.stderr)
            return 1
        where = served_address(area.json())
        print(f"Running {count} checkout tests against {base_url} as {token_hint(token)}...")
        for i in range(count):
            try:
                check_one(client, i, run, skus, where)
                passed += 1
            except (SmokeFailure, httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
                print(f"  #{i + 1} FAILED: {type(exc).__name__}: {exc}")
    orphans = 0
    if database_url:
        orphans = _orders_without_jobs(database_url)
        print(f"Orders without jobs (last hour): {orphans} (must be 0)")
    print(f"Passed: {passed}/{count}")
    print(f"Failed: {count - passed}/{count}")
    return 0 if passed == count and orphans == 0 else 1


def run_smoke(
    *, base_url: str | None, count: int, admin_token: str | None, database_url: str | None
) -> int:
    if count < 1:
        print("count must be at least 1", file=sys.stderr)
        return 2
    if base_url is not None:
        if not admin_token:
            print("smoke against a deployment needs --token or H2S_ADMIN_TOKEN", file=sys.stderr)
            return 2
        return run_against(base_url.rstrip("/"), count, admin_token, database_url)
    with throwaway_serve() as (url, token):
        return run_against(url, count, token, None)


def run(args: argparse.Namespace) -> int:
    return run_smoke(
        base_url=args.base_url,
        count=args.count,
        admin_token=args.token or os.environ.get("H2S_ADMIN_TOKEN"),
        database_url=os.environ.get("DATABASE_URL") if args.base_url else None,
    )
