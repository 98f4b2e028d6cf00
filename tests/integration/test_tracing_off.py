"""With no OTEL_EXPORTER_OTLP_ENDPOINT nothing of OpenTelemetry is imported or wrapped: a
process serving checkouts through both doors and running the reconciler loads none of its
API or SDK, and serves the same with the packages absent (a deployment without the extra).

Litestar's app constructor itself looks for its OpenTelemetry plugin when the package is
installed (litestar/app.py, _patch_opentelemetry_middleware): that loads the namespace and
the semantic conventions' HTTP attribute names, then gives up on the missing
instrumentation package. Those four modules are Litestar's, at start, not ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from support import ADMIN_TOKEN, WEBHOOK_SECRET

LITESTARS_OWN = {
    "opentelemetry",
    "opentelemetry.semconv",
    "opentelemetry.semconv.attributes",
    "opentelemetry.semconv.attributes.http_attributes",
}

SERVED = textwrap.dedent(
    """
    import asyncio, json, os, sys

    class Absent:
        \"\"\"As if OpenTelemetry were not installed.\"\"\"
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "opentelemetry":
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    if os.environ.get("OTEL_ABSENT"):
        sys.meta_path.insert(0, Absent())
    import httpx
    from h2s_checkout.app import create_app
    from h2s_checkout.settings import load_settings
    from support import checkout_body, in_chunks, running

    async def main():
        app = create_app(load_settings())
        async with running(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                fast = await client.post("/api/checkout", json=checkout_body())
                again = await client.post("/api/checkout", json=checkout_body())
                routed = await client.post(
                    "/api/checkout",
                    content=in_chunks(json.dumps(checkout_body(email="b@example.com")).encode()),
                    headers={"content-type": "application/json"},
                )
            await app.state.reconciler.run_once()
            kinds = {
                type(app.asgi_handler).__name__,
                type(app.state.payment_gateway).__name__,
                type(app.state.db_pool._queue.get_nowait()._con).__name__,
            }
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print(json.dumps({
            "statuses": [fast.status_code, again.status_code, routed.status_code],
            "loaded": loaded,
            "kinds": sorted(kinds),
        }))

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("absent", [False, True], ids=["installed", "absent"])
def test_a_process_with_tracing_off_never_imports_opentelemetry(
    database_url, emulator, db, tmp_path, absent
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "PYTHONPATH"}
    here = os.path.dirname(os.path.dirname(__file__))
    env.update(
        DATABASE_URL=database_url,
        STRIPE_API_BASE=emulator.base_url,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        H2S_ADMIN_TOKEN=ADMIN_TOKEN,
        H2S_RECONCILE_INTERVAL_S="0",
        H2S_EVENTS_POLL_S="0",
        H2S_LIMIT_CHECKOUTS_PER_MINUTE_IP="0",
        H2S_LIMIT_CHECKOUTS_PER_MINUTE_EMAIL="0",
        H2S_LOG_LEVEL="warning",
        H2S_DATA_DIR=str(tmp_path),
        PYTHONPATH=os.pathsep.join([here, os.path.join(os.path.dirname(here), "src")]),
        OTEL_ABSENT="1" if absent else "",
    )
    done = subprocess.run(
        [sys.executable, "-c", SERVED], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["statuses"] == [201, 201, 201]
    assert set(seen["loaded"]) <= LITESTARS_OWN
    assert "opentelemetry.trace" not in seen["loaded"]
    # asyncpg's own connections, the Stripe adapter itself, the request middleware outermost.
    assert seen["kinds"] == ["Connection", "RequestContextMiddleware", "StripeGateway"]
