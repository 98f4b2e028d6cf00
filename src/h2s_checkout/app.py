"""create_app(settings): routes, lifespan, error mapping and OpenAPI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusController

from h2s_checkout import __version__
from h2s_checkout.api.admin import CheckoutAdminController
from h2s_checkout.api.checkout import CheckoutController
from h2s_checkout.api.debug_page import DebugPageController
from h2s_checkout.api.errors import EXCEPTION_HANDLERS
from h2s_checkout.api.events import EventEndpointController
from h2s_checkout.api.health import HealthController
from h2s_checkout.api.middleware import RequestContextMiddleware
from h2s_checkout.api.portal import PortalController
from h2s_checkout.api.webhooks import StripeWebhookController
from h2s_checkout.flows.event_endpoints import sync_environment_endpoint
from h2s_checkout.flows.periodic import every
from h2s_checkout.flows.reaper import reap_keys
from h2s_checkout.logging import configure_logging, get_logger
from h2s_checkout.services import open_services
from h2s_checkout.settings import Settings

log = get_logger(__name__)


class MetricsController(PrometheusController):
    """Prometheus text format, outside the JSON API's OpenAPI schema."""

    include_in_schema = False


def create_app(settings: Settings, **overrides: Any) -> Litestar:
    """The ASGI app. ``settings.database_url`` and a payment provider must be resolved.

    ``overrides`` (tests): ``gateway`` replaces the Stripe adapter, ``clock`` the time.
    """
    if settings.database_url is None:
        raise RuntimeError("create_app needs settings.database_url; `serve` resolves it")

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_format)
        async with contextlib.AsyncExitStack() as stack:
            services = await stack.enter_async_context(
                open_services(settings, **{k: v for k, v in overrides.items() if v})
            )
            app.state.db_pool = services.pool
            app.state.payment_gateway = services.gateway
            app.state.catalog_cache = services.catalog
            app.state.checkout_flow = services.checkout_flow
            app.state.reconciler = services.reconciler
            app.state.event_deliverer = services.event_deliverer
            await sync_environment_endpoint(
                services.pool, settings.event_endpoint_url, settings.event_endpoint_secret
            )
            retention = timedelta(hours=settings.key_retention_hours)
            await stack.enter_async_context(
                every(
                    timedelta(minutes=15),
                    lambda: reap_keys(services.pool, retention),
                    name="h2s-key-reaper",
                )
            )
            if settings.reconcile_interval_s:
                await stack.enter_async_context(
                    every(
                        timedelta(seconds=settings.reconcile_interval_s),
                        services.reconciler.run_once,
                        name="h2s-reconciler",
                    )
                )
            if settings.events_poll_s:
                # Outbound events leave from here, off the request path (docs/events.md).
                await stack.enter_async_context(services.event_deliverer.running())
            log.info("service.started", payment_mode=settings.payment_mode)
            yield

    def from_state(name: str) -> Provide:
        def provide(state: State) -> Any:
            return state[name]

        return Provide(provide, sync_to_thread=False)

    app = Litestar(
        route_handlers=[
            CheckoutController,
            CheckoutAdminController,
            PortalController,
            EventEndpointController,
            StripeWebhookController,
            HealthController,
            DebugPageController,
            MetricsController,
        ],
        lifespan=[lifespan],
        state=State({"settings": settings}),
        dependencies={
            name: from_state(name)
            for name in ("db_pool", "payment_gateway", "checkout_flow", "catalog_cache")
        },
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
    # Outside the router, so that 404, 405 and other answers made before any route runs
    # also get the request context, the no-store header and their log line.
    app.asgi_handler = RequestContextMiddleware(app.asgi_handler)
    return app


def create_app_from_env() -> Litestar:
    """Factory for granian workers: the environment is already resolved by `serve`."""
    from h2s_checkout.settings import load_settings

    return create_app(load_settings())
