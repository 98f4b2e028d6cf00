"""`h2s-checkout serve`: the embedded stack (or what is configured), then granian serving
the app factory (`h2s_checkout.app:create_app_from_env`) with N workers."""

from __future__ import annotations

import argparse

from granian import Granian
from granian.constants import Interfaces

from h2s_checkout.embedded_stack import embedded_runtime, export_environment
from h2s_checkout.observability.logging import get_logger
from h2s_checkout.settings import load_settings

log = get_logger("h2s_checkout.cli")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.port is not None:
        settings = settings.with_overrides(port=args.port)
    with embedded_runtime(settings) as runtime:
        export_environment(runtime.settings)
        log.info(
            "service.listening",
            url=f"http://{runtime.settings.host}:{runtime.settings.port}",
            database="embedded" if runtime.embedded_postgres else "external",
            payments=runtime.settings.payment_mode,
            admin_token_file=str(settings.data_dir / "admin-token")
            if runtime.embedded_postgres and not settings.admin_token
            else None,
        )
        Granian(
            "h2s_checkout.app:create_app_from_env",
            address=runtime.settings.host,
            port=runtime.settings.port,
            interface=Interfaces.ASGI,
            workers=args.workers,
            factory=True,
            log_access=False,
        ).serve()
    return 0
