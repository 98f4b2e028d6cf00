"""Real-process tests for applying dbmate migrations to embedded (and, if present, system) PG."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from h2s_checkout.store import migrate
from h2s_checkout.store.embedded import EmbeddedPostgres
from h2s_checkout.store.migrate import (
    DbmateNotFoundError,
    MigrationError,
    apply_migrations,
    dump_schema,
    migration_versions,
    migrations_dir,
    pending_migrations,
    pending_migrations_async,
)

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/test"

MIGRATION_A = """-- migrate:up
create table widget (id bigint primary key, name text not null);

-- migrate:down
drop table widget;
"""
MIGRATION_B = """-- migrate:up
create table gadget (id bigint primary key, widget_id bigint references widget);

-- migrate:down
drop table gadget;
"""


def _run(dsn: str, fn: str, sql: str) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await getattr(conn, fn)(sql)
        finally:
            await conn.close()

    return asyncio.run(go())


def _with_db(dsn: str, name: str) -> str:
    return dsn.rsplit("/", 1)[0] + f"/{name}"


def _tables(dsn: str) -> set[str]:
    rows = _run(dsn, "fetch", "select tablename from pg_tables where schemaname = 'public'")
    return {row[0] for row in rows}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("migrate") / "pg", durable=False)
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def dsn(server: EmbeddedPostgres) -> str:
    """A fresh database per test so migrations start from nothing."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    _run(server.dsn, "execute", f"create database {name}")
    return _with_db(server.dsn, name)


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "20240101000000_widget.sql").write_text(MIGRATION_A)
    (directory / "20240102000000_gadget.sql").write_text(MIGRATION_B)
    (directory / "README.md").write_text("not a migration")
    return directory


def test_apply_pending_and_reapply(dsn: str, migrations: Path) -> None:
    assert pending_migrations(dsn, migrations) == ["20240101000000", "20240102000000"]

    apply_migrations(dsn, migrations=migrations)

    assert {"widget", "gadget", "schema_migrations"} <= _tables(dsn)
    assert pending_migrations(dsn, migrations) == []
    _run(dsn, "execute", "insert into widget values (1, 'w')")

    apply_migrations(dsn, migrations=migrations)
    assert _run(dsn, "fetchval", "select count(*) from schema_migrations") == 2
    assert _run(dsn, "fetchval", "select name from widget") == "w"


def test_new_migration_becomes_pending(dsn: str, migrations: Path) -> None:
    apply_migrations(dsn, migrations=migrations)
    (migrations / "20240103000000_more.sql").write_text(
        "-- migrate:up\nalter table widget add column colour text;\n-- migrate:down\n"
    )
    assert pending_migrations(dsn, migrations) == ["20240103000000"]
    apply_migrations(dsn, migrations=migrations)
    assert pending_migrations(dsn, migrations) == []


def test_env_var_selects_migrations_dir(
    dsn: str, migrations: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H2S_MIGRATIONS_DIR", str(migrations))
    assert migrations_dir() == migrations
    assert migration_versions() == ["20240101000000", "20240102000000"]
    apply_migrations(dsn)
    assert pending_migrations(dsn) == []


def test_env_var_pointing_nowhere_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H2S_MIGRATIONS_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="H2S_MIGRATIONS_DIR"):
        migrations_dir()


def test_default_migrations_dir_is_repo_db(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("H2S_MIGRATIONS_DIR", raising=False)
    repo = Path(__file__).resolve().parents[2]
    if not (repo / "db" / "migrations").is_dir():
        pytest.skip("repo has no db/migrations yet")
    assert migrations_dir() == repo / "db" / "migrations"


async def test_pending_from_async_code(dsn: str, migrations: Path) -> None:
    # The sync helper must not trip over the running loop (e.g. called from a handler).
    assert len(pending_migrations(dsn, migrations)) == 2
    assert len(await pending_migrations_async(dsn, migrations)) == 2
    conn = await asyncpg.connect(dsn)
    try:
        await asyncio.to_thread(apply_migrations, dsn, migrations=migrations)
        assert await pending_migrations_async(conn, migrations) == []
    finally:
        await conn.close()


def test_apply_can_dump_schema(dsn: str, migrations: Path, tmp_path: Path) -> None:
    schema = tmp_path / "schema.sql"
    apply_migrations(dsn, migrations=migrations, dump_schema=schema)
    text = schema.read_text()
    assert "Dumped from database version 18" in text
    assert "CREATE TABLE public.widget" in text
    assert "('20240102000000')" in text

    again = tmp_path / "again.sql"
    dump_schema(dsn, again)
    # Stable output matters: schema.sql is committed and diffed.
    assert again.read_text() == text


def test_failing_migration_reports_dbmate_error(dsn: str, migrations: Path) -> None:
    (migrations / "20240103000000_broken.sql").write_text(
        "-- migrate:up\nselect * from nope;\n-- migrate:down\n"
    )
    with pytest.raises(MigrationError, match="nope"):
        apply_migrations(dsn, migrations=migrations)
    assert pending_migrations(dsn, migrations) == ["20240103000000"]


def test_missing_dbmate_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(migrate.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DbmateNotFoundError, match="dbmate"):
        apply_migrations("postgresql://postgres@127.0.0.1:1/x", migrations=tmp_path)


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u@h:1/d", "postgresql://u@h:1/d?sslmode=disable"),
        (
            "postgresql://u@h:1/d?application_name=x",
            "postgresql://u@h:1/d?application_name=x&sslmode=disable",
        ),
        ("postgresql://u@h:1/d?sslmode=require", "postgresql://u@h:1/d?sslmode=require"),
    ],
)
def test_dbmate_url_gets_sslmode(dsn: str, expected: str) -> None:
    assert migrate._dbmate_url(dsn) == expected


@pytest.fixture
def system_pg_db() -> Iterator[str]:
    """A throwaway database on the machine's PostgreSQL, if one is reachable."""

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(SYSTEM_PG, timeout=2)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    name = f"h2s_compat_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(admin(f"create database {name}"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as err:
        pytest.skip(f"system PostgreSQL not usable: {err}")
    try:
        yield _with_db(SYSTEM_PG, name)
    finally:
        asyncio.run(admin(f"drop database if exists {name} with (force)"))


def test_compatible_with_system_postgres(
    system_pg_db: str, migrations: Path, tmp_path: Path
) -> None:
    assert len(pending_migrations(system_pg_db, migrations)) == 2
    schema = tmp_path / "schema.sql"
    apply_migrations(system_pg_db, migrations=migrations, dump_schema=schema)
    assert pending_migrations(system_pg_db, migrations) == []
    assert {"widget", "gadget"} <= _tables(system_pg_db)
    # The bundled v18 pg_dump handles the older server.
    assert "CREATE TABLE public.gadget" in schema.read_text()


BOOKING_KEY_MIGRATION = "20261127000001"


def _checkout_row(body: dict[str, Any], age: str) -> str:
    import json

    literal = json.dumps(body).replace("'", "''")
    return (
        "insert into h2s_checkouts (checkout_id, state, key_source, derived_key,"
        " request_fingerprint, request_body, stripe_idempotency_key, created_at) values"
        f" (gen_random_uuid(), 'session_created', 'derived', 'old-key', 'fp', '{literal}',"
        f" gen_random_uuid()::text, now() - interval '{age}') returning checkout_id"
    )


def _key_of(dsn: str, checkout_id: object) -> str:
    query = f"select derived_key from h2s_checkouts where checkout_id = '{checkout_id}'"
    return _run(dsn, "fetchval", query)


def test_the_booking_key_migration_rekeys_recent_checkouts_as_the_code_does(
    dsn: str, tmp_path: Path
) -> None:
    """A retry sent just before the upgrade must still find its checkout afterwards."""
    from h2s_checkout.domain.cart import cart_fingerprint, normalize_address, normalize_email
    from h2s_checkout.domain.keys import derived_key

    before = tmp_path / "before"
    before.mkdir()
    for path in migrations_dir().glob("*.sql"):
        if path.name < BOOKING_KEY_MIGRATION:
            (before / path.name).write_text(path.read_text())
    apply_migrations(dsn, migrations=before)
    bodies = [
        {
            "customer": {
                "email": "  Ana@Example.com ",
                "name": "Ana",
                "address": {
                    "line1": " 1  Main\u00a0St ",
                    "line2": None,
                    "city": "AUSTIN",
                    "state": "TX",
                    "postal_code": "78701",
                    "country": "US",
                },
            },
            "items": [
                {"sku": "tv-mount", "quantity": 1},
                {"sku": "camera-4", "quantity": 2},
                {"sku": "tv-mount", "quantity": 2},
            ],
        },
        {
            "customer": {
                "email": "bo@example.com",
                "name": "Bo",
                "phone": "+15555550101",
                "address": {
                    "line1": "77 Oak Ave",
                    "line2": "Apt 2",
                    "city": "Austin",
                    "state": "tx",
                    "postal_code": "78702",
                    "country": "us",
                },
            },
            "items": [{"sku": "smart-lock", "quantity": 1}],
        },
    ]
    recent = [_run(dsn, "fetchval", _checkout_row(body, "2 minutes")) for body in bodies]
    old = _run(dsn, "fetchval", _checkout_row(bodies[0], "2 days"))

    apply_migrations(dsn)

    for checkout_id, body in zip(recent, bodies, strict=True):
        customer = body["customer"]
        expected = derived_key(
            normalize_email(customer["email"]),
            cart_fingerprint((i["sku"], i["quantity"]) for i in body["items"]),
            normalize_address(customer["address"]),
        )
        assert _key_of(dsn, checkout_id) == expected
    # Past the five-minute window no lookup reaches a checkout: it keeps its old key.
    assert _key_of(dsn, old) == "old-key"
