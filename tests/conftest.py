"""Shared fixtures: one real PostgreSQL and one Stripe emulator per test session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from h2s_checkout.app import create_app
from h2s_checkout.observability import log_lines
from h2s_checkout.settings import EMULATOR_API_KEY, Settings
from h2s_checkout.store.embedded import EmbeddedPostgres
from h2s_checkout.store.migrate import apply_migrations
from h2s_checkout.store.pool import init_connection
from pgbouncer import INSTALL_LINE, PGBOUNCER, PgBouncer
from stripe_checkout_emulator.server import EmulatorServer
from support import ADMIN_TOKEN, DATA_TABLES, RESEED_CATALOG, WEBHOOK_SECRET, running


@pytest.fixture(autouse=True)
def _log_lines_stay_with_their_test() -> Iterator[None]:
    """A test's loop may close within log_lines.FLUSH_INTERVAL_S of its last line: what
    it still holds is written in its own test, not with the next test's first line."""
    yield
    log_lines.flush()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """TEST_DATABASE_URL if given, else an embedded PostgreSQL the session owns."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        apply_migrations(given)
        yield given
        return
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", durable=False)
    dsn = pg.start()
    try:
        apply_migrations(dsn)
        yield dsn
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def pgbouncer(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """Debian's PgBouncer in transaction mode in front of the test database, for the
    session. Skipped where it is not installed, except in CI (.ci/run installs it)."""
    if PGBOUNCER is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must have Debian's pgbouncer: .ci/run installs it")
        pytest.skip(f"no pgbouncer here: {INSTALL_LINE}")
    bouncer = PgBouncer(database_url, tmp_path_factory.mktemp("pgbouncer")).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stripe(emulator: EmulatorServer) -> Iterator[Any]:
    """The emulator's state, reset around each test: sessions, requests, faults."""
    emulator.state.reset()
    yield emulator.state
    emulator.state.reset()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database, emptied of checkout data first."""
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    await conn.execute(f"truncate {', '.join(DATA_TABLES)} restart identity cascade")
    await conn.execute(RESEED_CATALOG)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def settings(database_url: str, emulator: EmulatorServer) -> Settings:
    return Settings(
        database_url=database_url,
        stripe_api_base=emulator.base_url,
        stripe_api_key=EMULATOR_API_KEY,
        stripe_timeout_s=1.0,
        stripe_max_retries=1,
        admin_token=ADMIN_TOKEN,
        stripe_webhook_secret=WEBHOOK_SECRET,
        reconcile_interval_s=0,  # tests run passes themselves
        events_poll_s=0,  # and event deliveries too
        events_allow_private=True,  # subscribers on 127.0.0.1
        public_base_url="http://shop.test",
        db_pool_min=1,
        db_pool_max=5,
        log_format="json",
        data_dir=Path("/nonexistent"),
        # Tests make many checkouts from one address and email; the limits' own tests
        # turn them on.
        limit_checkouts_per_minute_ip=0,
        limit_checkouts_per_minute_email=0,
    )


class FakeClock:
    """An injectable clock: starts at the real time, moves only when told."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(
    settings: Settings, db: asyncpg.Connection, stripe: Any, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, clock=clock)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as test:
            test.app = app  # type: ignore[attr-defined]
            yield test


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
