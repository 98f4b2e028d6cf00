"""`h2s-checkout migrate`: apply db/migrations to DATABASE_URL, or to the embedded database."""

from __future__ import annotations

import argparse

from h2s_checkout.embedded_stack import check_pooler, migrate_database
from h2s_checkout.observability.logging import get_logger
from h2s_checkout.settings import load_settings
from h2s_checkout.store.embedded import EmbeddedPostgres
from h2s_checkout.store.migrate import apply_migrations

log = get_logger("h2s_checkout.cli")


def run(_: argparse.Namespace) -> int:
    settings = load_settings()
    if settings.database_url is not None:
        check_pooler(settings)
        migrate_database(settings)
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        pg = EmbeddedPostgres(settings.data_dir / "postgres")
        try:
            apply_migrations(pg.start())
        finally:
            if pg.launched:  # a database a running `serve` owns stays up
                pg.stop()
    log.info("migrations.applied", database="external" if settings.database_url else "embedded")
    return 0
