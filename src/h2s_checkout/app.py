"""create_app(settings): routes, lifespan, error mapping and OpenAPI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusController

from h2s_checkout import __version__
from h2s_checkout.api.admin import CheckoutAdminController
from h2s_checkout.api.allow import allow_every_method
from h2s_checkout.api.catalog import CatalogItemController, ServiceAreaController
from h2s_checkout.api.checkout import CheckoutController
from h2s_checkout.api.checkout_fast_path import CheckoutFastPath
from h2s_checkout.api.client_address import ClientAddresses
from h2s_checkout.api.debug_page import DebugPageController
from h2s_checkout.api.errors import EXCEPTION_HANDLERS
from h2s_checkout.api.events import EventEndpointController
from h2s_checkout.api.health import HealthController
from h2s_checkout.api.jobs import JobController
from h2s_checkout.api.keys import ApiKeyController
from h2s_checkout.api.middleware import RequestContextMiddleware
from h2s_checkout.api.openapi import ClosedStructSchemaPlugin
from h2s_checkout.api.orders import OrderController, OrderReadController
from h2s_checkout.api.portal import PortalController
from h2s_checkout.api.reconcile import ReconcileController
from h2s_checkout.api.request_screen import BodyScreen
from h2s_checkout.api.return_pages import CustomerReturnController
from h2s_checkout.api.sessions import STORE_NAME, PostgresSessionStore, session_config
from h2s_checkout.api.webhooks import WEBHOOK_MAX_BODY_BYTES, StripeWebhookController
from h2s_checkout.bootstrap import open_services
from h2s_checkout.flows.event_endpoints import sync_environment_endpoint
from h2s_checkout.flows.periodic import every
from h2s_checkout.flows.reaper import reap_events, reap_keys, reap_sessions_and_counters
from h2s_checkout.gc_pauses import freeze_startup_objects
from h2s_checkout.observability import log_lines, tracing
from h2s_checkout.observability.logging import configure_logging, get_logger
from h2s_checkout.settings import Settings
from h2s_checkout.store.traces import utcnow

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
    clock = overrides.get("clock") or utcnow
    sessions = PostgresSessionStore(clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_format)
        async with contextlib.AsyncExitStack() as stack:
            # First in, so last out: the log lines still held, the closing services' too,
            # are written before a granian worker process leaves (without running atexit).
            stack.callback(log_lines.flush)
            if settings.tracing and not tracing.enabled():
                # In the worker process (the batch processor's thread does not survive a
                # fork), before the pool and the gateway, which are traced when it is on;
                # what it holds is exported when the worker stops.
                tracing.start(version=__version__)
                stack.callback(tracing.shutdown)
            services = await stack.enter_async_context(
                open_services(settings, **{k: v for k, v in overrides.items() if v})
            )
            app.state.db_pool = services.pool
            app.state.payment_gateway = services.gateway
            app.state.catalog_cache = services.catalog
            app.state.catalog_admin = services.catalog_admin
            app.state.checkout_flow = services.checkout_flow
            app.state.reconciler = services.reconciler
            app.state.order_cancellation = services.order_cancellation
            app.state.job_completion = services.job_completion
            app.state.partial_refunds = services.partial_refunds
            app.state.key_ring = services.key_ring
            app.state.sign_in_gate = services.sign_in_gate
            sessions.bind(services.pool)
            app.state.event_deliverer = services.event_deliverer
            app.state.reserved_targets = services.reserved_targets
            await sync_environment_endpoint(
                services.pool, settings.event_endpoint_url, settings.event_endpoint_secret
            )
            key_retention = timedelta(hours=settings.key_retention_hours)
            event_retention = timedelta(days=settings.event_retention_days)
            reapers: dict[str, Callable[[], Awaitable[object]]] = {
                "h2s-key-reaper": lambda: reap_keys(services.pool, key_retention),
                "h2s-session-reaper": lambda: reap_sessions_and_counters(services.pool, clock),
                "h2s-event-reaper": lambda: reap_events(services.pool, event_retention),
            }
            for name, reap in reapers.items():
                await stack.enter_async_context(every(timedelta(minutes=15), reap, name=name))
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
            CatalogItemController,
            ServiceAreaController,
            OrderController,
            OrderReadController,
            JobController,
            PortalController,
            ApiKeyController,
            ReconcileController,
            EventEndpointController,
            StripeWebhookController,
            HealthController,
            CustomerReturnController,
            # Sign-in sessions exist on the debug page only: no other route reads or
            # writes them.
            Router(
                "/",
                route_handlers=[DebugPageController],
                middleware=[
                    session_config(
                        secure=settings.public_base_url.startswith("https://")
                    ).middleware
                ],
            ),
            MetricsController,
        ],
        lifespan=[lifespan],
        state=State(
            {
                "settings": settings,
                "client_addresses": ClientAddresses(settings.trusted_proxies),
            }
        ),
        stores={STORE_NAME: sessions},
        dependencies={
            name: from_state(name)
            for name in (
                "db_pool",
                "payment_gateway",
                "checkout_flow",
                "catalog_cache",
                "catalog_admin",
                "order_cancellation",
                "job_completion",
                "partial_refunds",
                "reconciler",
                "key_ring",
                "sign_in_gate",
            )
        },
        exception_handlers=EXCEPTION_HANDLERS,
        plugins=[ClosedStructSchemaPlugin()],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="h2s-checkout",
            version=__version__,
            path="/schema",
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key (h2s_key_...) with the operation's scope, "
                        "or H2S_ADMIN_TOKEN (every scope)",
                    ),
                }
            ),
        ),
        debug=False,
    )
    allow_every_method(app)
    # Outside the router, so that 404, 405 and other answers made before any route runs
    # also get the request context, the no-store header and their log line.
    # Every body a route may read is screened (NUL, nesting) in front of the router; the
    # fast path screens the bodies it decodes itself with the same function.
    screened = BodyScreen(
        app.asgi_handler,
        max_body_bytes=max(settings.max_body_bytes, WEBHOOK_MAX_BODY_BYTES),
        depth_body_bytes=settings.max_body_bytes,
    )
    app.asgi_handler = RequestContextMiddleware(
        CheckoutFastPath(screened, app, max_body_bytes=settings.max_body_bytes)
    )
    if settings.tracing or tracing.enabled():
        # The server span around all of it; with tracing off nothing is wrapped.
        from h2s_checkout.api.server_spans import ServerSpans

        app.asgi_handler = ServerSpans(app.asgi_handler)
    return app


def create_app_from_env() -> Litestar:
    """Factory for granian workers: the environment is already resolved by `serve`."""
    from h2s_checkout.settings import load_settings

    app = create_app(load_settings())
    # After the lifespan has opened everything: what exists now lives as long as the worker.
    app.on_startup.append(freeze_startup_objects)
    return app
