"""`h2s-checkout catalog ...` and `service-area ...`: the catalog from a shell, through
the same flows as the API, recorded under the shell's actor."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support import checkout_body


def h2s(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("H2S_", "STRIPE_"))},
        "DATABASE_URL": database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "h2s_checkout", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_price_set_in_a_shell_is_charged_by_the_running_service(client, db, database_url):
    assert (await client.post("/api/checkout", json=checkout_body())).status_code == 201
    added = h2s(
        database_url,
        "catalog",
        "add",
        "gutter-clean",
        "--name",
        "Gutter cleaning",
        "--price",
        "89.00",
    )
    changed = h2s(database_url, "catalog", "set", "tv-mount", "--price", "159.50")
    off = h2s(database_url, "catalog", "deactivate", "wifi-mesh")
    listed = h2s(database_url, "catalog", "list", "--all", "--json")
    history = h2s(database_url, "catalog", "history", "tv-mount")

    for done in (added, changed, off, listed, history):
        assert done.returncode == 0, done.stderr
    assert "changed tv-mount: 159.50 usd, version 2" in changed.stdout
    items = {i["sku"]: i for i in json.loads(listed.stdout)}
    assert items["gutter-clean"]["unit_amount_cents"] == 8900
    assert items["wifi-mesh"]["active"] is False
    assert "unit_amount_cents: 14900 -> 15950" in history.stdout
    actor = await db.fetchval("select actor from h2s_catalog_history where sku = 'tv-mount'")
    assert actor.startswith("cli")

    # The running app has the old price cached: phase 1 catches it.
    booked = await client.post("/api/checkout", json=checkout_body(email="cy@example.com"))
    assert booked.status_code == 201, booked.text
    total = await db.fetchval(
        "select total_cents from h2s_orders where order_id = $1", booked.json()["order_id"]
    )
    assert total == 15950


async def test_the_service_area_from_a_shell_and_refusals_that_write_nothing(
    client, db, database_url
):
    put = h2s(database_url, "service-area", "set", "US:787,78613")
    shown = h2s(database_url, "service-area", "show", "--json")
    assert put.returncode == 0, put.stderr
    assert json.loads(shown.stdout)["areas"] == [
        {"country": "US", "postal_code_prefixes": ["78613", "787"]}
    ]
    outside = checkout_body()
    outside["customer"]["address"]["postal_code"] = "10001"
    refused = await client.post("/api/checkout", json=outside)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "outside_service_area"

    history_before = await db.fetchval("select count(*) from h2s_catalog_history")
    bad_price = h2s(database_url, "catalog", "set", "tv-mount", "--price", "0")
    bad_currency = h2s(database_url, "catalog", "set", "tv-mount", "--currency", "xyz")
    stale = h2s(
        database_url, "catalog", "set", "tv-mount", "--price", "1", "--if-match", '"tv-mount.v9"'
    )
    taken = h2s(database_url, "catalog", "add", "tv-mount", "--name", "x", "--price", "1")
    assert [p.returncode for p in (bad_price, bad_currency, stale, taken)] == [1, 1, 1, 1]
    assert "precondition_failed" in stale.stderr
    assert "unknown_currency" in bad_currency.stderr
    assert "sku_taken" in taken.stderr
    assert await db.fetchval("select count(*) from h2s_catalog_history") == history_before
