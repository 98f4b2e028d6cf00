"""Resolve the embedded defaults: PostgreSQL under ./.data, migrations, the Stripe emulator."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from h2s_checkout.logging import get_logger
from h2s_checkout.settings import EMULATOR_API_KEY, Settings
from h2s_checkout.store.embedded import EmbeddedPostgres
from h2s_checkout.store.migrate import apply_migrations

log = get_logger(__name__)


EMULATOR_URL_FILE = "stripe-emulator-url"


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
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


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
        if migrate:
            apply_migrations(settings.database_url or "")
        if start_emulator and settings.payment_mode == "embedded-emulator":
            from h2s_checkout.payments.emulator.server import EmulatorServer

            # The emulator delivers its signed events to this service, as Stripe would.
            secret = settings.stripe_webhook_secret or "whsec_" + secrets.token_hex(24)
            emulator = EmulatorServer(
                port=0,
                webhook_url=f"http://127.0.0.1:{settings.port}/api/stripe/webhook",
                webhook_secret=secret,
            )
            url = emulator.start()
            settings = settings.with_overrides(
                stripe_api_base=url, stripe_api_key=EMULATOR_API_KEY, stripe_webhook_secret=secret
            )
            # Commands run beside `serve` (reconcile, doctor) find the emulator here.
            (settings.data_dir / EMULATOR_URL_FILE).write_text(url + "\n")
            log.info("stripe_emulator.started", url=url)
        settings = settings.with_overrides(admin_token=_admin_token(settings, pg is not None))
        yield Runtime(settings, pg, emulator.base_url if emulator else None)
    finally:
        if emulator is not None:
            emulator.stop()
            (settings.data_dir / EMULATOR_URL_FILE).unlink(missing_ok=True)
        if pg is not None and pg.launched:
            pg.stop()


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
    }
    for key, value in pairs.items():
        if value:
            os.environ[key] = value
