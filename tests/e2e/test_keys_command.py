"""`h2s-checkout keys create|list|revoke`: keys from a shell, on the service's database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from h2s_checkout.flows.api_keys import CACHE_TTL


def keys(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("H2S_", "STRIPE_"))},
        "DATABASE_URL": database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "h2s_checkout", "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_key_made_in_a_shell_works_until_revoked_there(client, db, database_url, clock):
    made = keys(database_url, "create", "--name", "night-shift", "--scope", "read")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("h2s_key_")
    assert "shown this once" in made.stderr
    auth = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/api/portal/jobs", headers=auth)).status_code == 200

    listed = keys(database_url, "list", "--json")
    table = keys(database_url, "list")
    [entry] = json.loads(listed.stdout)
    assert entry["name"] == "night-shift"
    assert entry["created_by"].startswith("cli")
    assert key not in listed.stdout + table.stdout
    assert "night-shift" in table.stdout

    revoked = keys(database_url, "revoke", entry["key_id"])
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked night-shift" in revoked.stdout
    clock.advance(seconds=CACHE_TTL.total_seconds())  # the running app's cache
    assert (await client.get("/api/portal/jobs", headers=auth)).status_code == 401
    row = await db.fetchrow("select revoked_by from h2s_api_keys")
    assert row["revoked_by"].startswith("cli")


async def test_bad_arguments_are_refused_and_write_nothing(db, database_url):
    taken = keys(database_url, "create", "--name", "ops", "--scope", "read")
    again = keys(database_url, "create", "--name", "ops", "--scope", "admin")
    reserved = keys(database_url, "create", "--name", "webhook", "--scope", "read")
    unknown_scope = keys(database_url, "create", "--name", "x", "--scope", "root")
    naive = keys(
        database_url, "create", "--name", "x", "--scope", "read", "--expires-at", "2099-01-01"
    )
    missing = keys(database_url, "revoke", "00000000-0000-4000-8000-000000000000")

    assert taken.returncode == 0
    assert (again.returncode, reserved.returncode, missing.returncode) == (1, 1, 1)
    assert "in force" in again.stderr
    assert unknown_scope.returncode == 2
    assert naive.returncode == 2
    assert await db.fetchval("select count(*) from h2s_api_keys") == 1
