"""`h2s-checkout reconcile`: one reconciler pass, against the configured payment provider or
the running `serve`'s emulator."""

from __future__ import annotations

import argparse
import asyncio

from h2s_checkout.bootstrap import open_services
from h2s_checkout.embedded_stack import embedded_runtime, provider_settings
from h2s_checkout.observability import tracing
from h2s_checkout.settings import Settings, load_settings


def run(_: argparse.Namespace) -> int:
    settings = load_settings()

    async def once(resolved: Settings) -> str:
        if resolved.tracing:
            tracing.start()  # the pass is a trace, as the in-service reconciler's are
        try:
            async with open_services(resolved) as services:
                return str(await services.reconciler.run_once())
        finally:
            tracing.shutdown()  # exports what the batch processor holds

    with embedded_runtime(settings, start_emulator=False) as runtime:
        report = asyncio.run(once(provider_settings(runtime.settings)))
    print(f"reconcile: {report}")
    return 0
