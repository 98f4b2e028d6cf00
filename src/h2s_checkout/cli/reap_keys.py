"""`h2s-checkout reap-keys`: forget client Idempotency-Keys past their retention."""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from h2s_checkout.embedded_stack import embedded_runtime
from h2s_checkout.flows.reaper import reap_keys
from h2s_checkout.settings import load_settings
from h2s_checkout.store.pool import create_pool


def run(_: argparse.Namespace) -> int:
    settings = load_settings()

    async def once(dsn: str) -> int:
        pool = await create_pool(
            dsn, min_size=1, max_size=1, prepared_statements=settings.prepared_statements
        )
        try:
            return await reap_keys(pool, timedelta(hours=settings.key_retention_hours))
        finally:
            await pool.close()

    with embedded_runtime(settings, start_emulator=False) as runtime:
        reaped = asyncio.run(once(runtime.settings.database_url or ""))
    print(f"reaped {reaped} idempotency keys older than {settings.key_retention_hours} h")
    return 0
