"""create_app(settings): routes, lifespan, error mapping and OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from h2s_checkout import __version__
from h2s_checkout.api.admin import CheckoutAdminController
from h2s_checkout.api.checkout import CheckoutController
from h2s_checkout.api.errors import EXCEPTION_HANDLERS
from h2s_checkout.api.health import HealthController
from h2s_checkout.api.middleware import RequestContextMiddleware
from h2s_checkout.flows.begin_checkout import CheckoutFlow, CheckoutSettings
from h2s_checkout.flows.catalog_cache import CatalogCache
from h2s_checkout.flows.reaper import reaping
from h2s_checkout.logging import configure_logging, get_logger
from h2s_checkout.payments.port import PaymentGateway
from h2s_checkout.payments.stripe_gateway import StripeGateway
from h2s_checkout.settings import EMULATOR_API_KEY, Settings
from h2s_checkout.store.pool import create_pool

log = get_logger(__name__)


def build_gateway(settings: Settings) -> PaymentGateway:
    if settings.payment_mode == "embedded-emulator":
        raise RuntimeError(
            "no payment provider configured: set STRIPE_API_BASE (emulator) or "
            "STRIPE_API_KEY (Stripe); `h2s-checkout serve` starts the emulator itself"
        )
    return StripeGateway(
        settings.stripe_api_key or EMULATOR_API_KEY,
        api_base=settings.stripe_api_base,
        timeout_s=settings.stripe_timeout_s,
        max_retries=settings.stripe_max_retries,
    )


def create_app(settings: Settings, **overrides: Any) -> Litestar:
    """The ASGI app. ``settings.database_url`` and a payment provider must be resolved."""
    if settings.database_url is None:
        raise RuntimeError("create_app needs settings.database_url; `serve` resolves it")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_format)
        pool = await create_pool(
            settings.database_url or "",
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
        )
        gateway = overrides.get("gateway") or build_gateway(settings)
        catalog = CatalogCache(pool)
        app.state.db_pool = pool
        app.state.payment_gateway = gateway
        app.state.catalog_cache = catalog
        app.state.checkout_flow = CheckoutFlow(
            pool,
            gateway,
            catalog,
            CheckoutSettings(
                public_base_url=settings.public_base_url,
                session_ttl=timedelta(minutes=settings.session_ttl_minutes),
                lease=timedelta(seconds=settings.checkout_lease_s),
                **({"clock": overrides["clock"]} if "clock" in overrides else {}),
            ),
        )
        log.info("service.started", payment_mode=settings.payment_mode)
        try:
            async with reaping(pool, timedelta(hours=settings.key_retention_hours)):
                yield
        finally:
            await gateway.close()
            await pool.close()

    def from_state(name: str) -> Provide:
        def provide(state: State) -> Any:
            return state[name]

        return Provide(provide, sync_to_thread=False)

    return Litestar(
        route_handlers=[CheckoutController, CheckoutAdminController, HealthController],
        lifespan=[lifespan],
        state=State({"settings": settings}),
        dependencies={
            name: from_state(name)
            for name in ("db_pool", "payment_gateway", "checkout_flow", "catalog_cache")
        },
        middleware=[RequestContextMiddleware],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="h2s-checkout",
            version=__version__,
            path="/schema",
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(type="http", scheme="bearer"),
                }
            ),
        ),
        debug=False,
    )


def create_app_from_env() -> Litestar:
    """Factory for granian workers: the environment is already resolved by `serve`."""
    from h2s_checkout.settings import load_settings

    return create_app(load_settings())
