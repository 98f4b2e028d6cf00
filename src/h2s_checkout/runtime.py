"""Resolve the embedded defaults: PostgreSQL under ./.data, migrations, the Stripe emulator."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from h2s_checkout.logging import get_logger
from h2s_checkout.settings import EMULATOR_API_KEY, Settings
from h2s_checkout.store.blocking import run_to_end
from h2s_checkout.store.embedded import EmbeddedPostgres
from h2s_checkout.store.migrate import apply_migrations
from h2s_checkout.store.pooler import PoolerMismatch, check_database

if TYPE_CHECKING:
    from h2s_checkout.payments.emulator.server import EmulatorServer

log = get_logger(__name__)


EMULATOR_URL_FILE = "stripe-emulator-url"
# The emulator's port, chosen once and kept: the pay links it handed out name it.
EMULATOR_PORT_FILE = "stripe-emulator-port"
# Its sessions, events, idempotent answers and undelivered webhooks (SQLite).
EMULATOR_STATE_FILE = "stripe-emulator.sqlite3"


class StartupError(RuntimeError):
    """The embedded stack cannot start; the message says why and what to do."""


def provider_settings(settings: Settings) -> Settings:
    """For a command beside a running embedded `serve`: point it at that emulator."""
    if settings.payment_mode != "embedded-emulator":
        return settings
    path = settings.data_dir / EMULATOR_URL_FILE
    if not path.exists():
        raise RuntimeError(
            "no payment provider: set STRIPE_API_BASE or STRIPE_API_KEY, or start "
            "`h2s-checkout serve` (its emulator's address is kept in "
            f"{path})"
        )
    return settings.with_overrides(
        stripe_api_base=path.read_text().strip(), stripe_api_key=EMULATOR_API_KEY
    )


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    embedded_postgres: EmbeddedPostgres | None
    emulator_url: str | None


def _admin_token(settings: Settings, embedded: bool) -> str | None:
    """Production without a token stays closed; the embedded dev stack gets one on disk."""
    if settings.admin_token or not embedded:
        return settings.admin_token
    path = settings.data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    # Hex, not URL-safe base64: a token that began with "-" was taken for an option when
    # passed as `smoke --token TOKEN` (argparse), one start in 64.
    token = secrets.token_hex(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def check_pooler(settings: Settings) -> None:
    """Refuse to start on a database that is not what H2S_DB_POOLER says: a transaction
    pooler nobody declared answers 500s under load (store/pooler.py)."""
    if settings.database_url is None:
        return  # the embedded database: nothing in front of it
    database_url = settings.database_url
    try:
        run_to_end(
            lambda: check_database(
                database_url,
                settings.db_pooler,
                settings.database_direct_url,
                timeout_s=settings.db_timeout_s,
            )
        )
    except PoolerMismatch as exc:
        raise StartupError(str(exc)) from exc


def migrate_database(settings: Settings) -> None:
    """Apply migrations where dbmate's session lock is safe: H2S_DATABASE_DIRECT_URL,
    else DATABASE_URL, under a transaction-scoped lock when that leads to a transaction
    pooler (store/migrate.py)."""
    direct = settings.database_direct_url
    apply_migrations(
        direct or settings.database_url or "",
        transaction_pooler=direct is None and settings.transaction_pooler,
    )


@contextlib.contextmanager
def embedded_runtime(
    settings: Settings, *, migrate: bool = True, start_emulator: bool = True
) -> Iterator[Runtime]:
    """Start what the settings leave unset; stop what was started here on exit."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pg: EmbeddedPostgres | None = None
    emulator = None
    try:
        if settings.database_url is None:
            pg = EmbeddedPostgres(settings.data_dir / "postgres")
            settings = settings.with_overrides(database_url=pg.start())
            log.info("embedded_postgres.started", dsn=settings.database_url)
        else:
            check_pooler(settings)
        if migrate:
            migrate_database(settings)
        if start_emulator and settings.payment_mode == "embedded-emulator":
            emulator = start_embedded_emulator(settings)
            settings = settings.with_overrides(
                stripe_api_base=emulator.base_url,
                stripe_api_key=EMULATOR_API_KEY,
                stripe_webhook_secret=emulator.state.webhooks.secret,
            )
        settings = settings.with_overrides(admin_token=_admin_token(settings, pg is not None))
        yield Runtime(settings, pg, emulator.base_url if emulator else None)
    finally:
        if emulator is not None:
            emulator.stop()
            (settings.data_dir / EMULATOR_URL_FILE).unlink(missing_ok=True)
        if pg is not None and pg.launched:
            pg.stop()


def start_embedded_emulator(settings: Settings) -> EmulatorServer:
    """The emulator of the embedded stack: on its kept port, resuming its kept state.

    It delivers its signed events to this service, as Stripe would. Stopping
    and starting `serve` leaves its pay links, sessions and undelivered events
    as they were, as a Stripe account would.
    """
    from h2s_checkout.payments.emulator.server import EmulatorServer
    from h2s_checkout.payments.emulator.statefile import StateFileError

    secret = settings.stripe_webhook_secret or "whsec_" + secrets.token_hex(24)
    port_file = settings.data_dir / EMULATOR_PORT_FILE
    port = _kept_port(port_file)
    state_path = settings.data_dir / EMULATOR_STATE_FILE
    try:
        emulator = EmulatorServer(
            port=port,
            webhook_url=f"http://127.0.0.1:{settings.port}/api/stripe/webhook",
            webhook_secret=secret,
            state_path=state_path,
        )
    except StateFileError as exc:
        raise StartupError(str(exc)) from exc
    try:
        url = emulator.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise StartupError(
            f"the Stripe emulator's port {port} (kept in {port_file}) is taken by another "
            f"process. Stop that process, or delete {port_file} to take a new port; the pay "
            "links handed out before then stop working."
        ) from exc
    # Commands run beside `serve` (reconcile, doctor) find the emulator here.
    (settings.data_dir / EMULATOR_URL_FILE).write_text(url + "\n")
    log.info("stripe_emulator.started", url=url, state=str(state_path))
    return emulator


def _kept_port(path: Path) -> int:
    """The port in `path`; the first time, a free one, written there."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        path.write_text(f"{port}\n")
        return port
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise StartupError(f"{path} should hold the Stripe emulator's port number, not {text!r}")
    return int(text)


def export_environment(settings: Settings) -> None:
    """Hand resolved settings to server worker processes through their environment."""
    pairs = {
        "DATABASE_URL": settings.database_url,
        "STRIPE_API_BASE": settings.stripe_api_base,
        "STRIPE_API_KEY": settings.stripe_api_key,
        "H2S_ADMIN_TOKEN": settings.admin_token,
        "STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret,
        "PUBLIC_BASE_URL": settings.public_base_url,
        "PORT": str(settings.port),
        # Workers see DATABASE_URL set; the embedded stack's default must follow them.
        "H2S_EVENTS_ALLOW_PRIVATE": "true" if settings.events_allow_private else "false",
    }
    for key, value in pairs.items():
        if value:
            os.environ[key] = value
