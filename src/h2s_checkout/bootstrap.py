"""The composition root: wire the use cases from settings, a pool and a payment gateway, for
the app and the commands."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import psutil

from h2s_checkout.domain.events import Address, ReservedTargets, service_targets
from h2s_checkout.domain.limits import CheckoutLimits
from h2s_checkout.flows.api_keys import KeyRing
from h2s_checkout.flows.begin_checkout import CheckoutFlow, CheckoutSettings
from h2s_checkout.flows.cancel_order import OrderCancellation
from h2s_checkout.flows.capture import JobCompletion
from h2s_checkout.flows.catalog import CatalogAdmin
from h2s_checkout.flows.catalog_cache import CatalogCache
from h2s_checkout.flows.event_delivery import DeliverySettings, EventDeliverer
from h2s_checkout.flows.partial_refunds import PartialRefunds
from h2s_checkout.flows.reconcile import Reconciler, ReconcileSettings
from h2s_checkout.flows.sign_in import SignInGate
from h2s_checkout.observability import tracing
from h2s_checkout.payments.port import PaymentGateway
from h2s_checkout.payments.stripe_gateway import StripeGateway
from h2s_checkout.settings import EMULATOR_API_KEY, Settings
from h2s_checkout.store.pool import create_pool
from h2s_checkout.store.pooler import check_database
from h2s_checkout.store.traces import utcnow


@dataclass(frozen=True)
class Services:
    pool: asyncpg.Pool
    gateway: PaymentGateway
    catalog: CatalogCache
    checkout_flow: CheckoutFlow
    reconciler: Reconciler
    order_cancellation: OrderCancellation
    job_completion: JobCompletion
    partial_refunds: PartialRefunds
    key_ring: KeyRing
    sign_in_gate: SignInGate
    event_deliverer: EventDeliverer
    reserved_targets: ReservedTargets
    catalog_admin: CatalogAdmin


def reserved_targets(settings: Settings) -> ReservedTargets:
    """Where events are never sent: this service and its payment provider, on any of this
    machine's addresses when they listen on loopback or every interface. The interfaces
    are read once, at start."""
    return ReservedTargets(
        service_targets(
            host=settings.host,
            port=settings.port,
            public_base_url=settings.public_base_url,
            provider_base_url=settings.stripe_api_base,
        ),
        _machine_addresses(),
    )


def _machine_addresses() -> frozenset[Address]:
    import ipaddress
    import socket

    found: set[Address] = set()
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(ipaddress.ip_address(entry.address.split("%", 1)[0]))
                except ValueError:
                    continue
    return frozenset(found)


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


def build_services(
    settings: Settings,
    pool: asyncpg.Pool,
    gateway: PaymentGateway,
    clock: Callable[[], datetime] = utcnow,
) -> Services:
    lease = timedelta(seconds=settings.checkout_lease_s)
    catalog = CatalogCache(pool)
    flow = CheckoutFlow(
        pool,
        gateway,
        catalog,
        CheckoutSettings(
            public_base_url=settings.public_base_url,
            success_url=settings.success_url,
            cancel_url=settings.cancel_url,
            session_ttl=timedelta(minutes=settings.session_ttl_minutes),
            lease=lease,
            clock=clock,
            limits=CheckoutLimits(
                per_address=settings.limit_checkouts_per_minute_ip,
                per_email=settings.limit_checkouts_per_minute_email,
                per_key=settings.limit_checkouts_per_minute_key,
            ),
            phase_slots=settings.checkout_phase_slots,
            capture=settings.capture,
        ),
    )
    reconciler = Reconciler(
        pool,
        gateway,
        flow,
        ReconcileSettings(
            stuck_after=lease, lease=lease, refund_late_payments=settings.refund_late_payments
        ),
        clock=clock,
    )
    cancellation = OrderCancellation(pool, gateway, lease=lease, clock=clock)
    completion = JobCompletion(pool, gateway, lease=lease, clock=clock)
    partial_refunds = PartialRefunds(pool, gateway, lease=lease, clock=clock)
    key_ring = KeyRing(pool, settings.admin_token, clock=clock)
    sign_in_gate = SignInGate(pool, key_ring, settings.limit_login_failures, clock=clock)
    reserved = reserved_targets(settings)
    deliverer = EventDeliverer(
        settings.database_url or "",
        DeliverySettings(
            timeout=timedelta(seconds=settings.events_timeout_s),
            poll_interval=timedelta(seconds=settings.events_poll_s or 1.0),
            allow_private=settings.events_allow_private,
            reserved=reserved,
        ),
        clock=clock,
        listen_dsn=settings.session_database_url,
        prepared_statements=settings.prepared_statements,
    )
    return Services(
        pool,
        gateway,
        catalog,
        flow,
        reconciler,
        cancellation,
        completion,
        partial_refunds,
        key_ring,
        sign_in_gate,
        deliverer,
        reserved,
        CatalogAdmin(pool, catalog),
    )


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    gateway: PaymentGateway | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> AsyncIterator[Services]:
    """Pool and gateway opened for the context's length; closed after. A database that is
    not what H2S_DB_POOLER says is refused first (PoolerMismatch)."""
    if settings.database_url is not None:
        await check_database(
            settings.database_url,
            settings.db_pooler,
            settings.database_direct_url,
            timeout_s=settings.db_timeout_s,
        )
    pool = await create_pool(
        settings.database_url or "",
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout_s=settings.db_timeout_s,
        prepared_statements=settings.prepared_statements,
    )
    owned_gateway = gateway or build_gateway(settings)
    used_gateway = owned_gateway
    if tracing.enabled():
        # A span per provider call; with tracing off the flows call the gateway itself.
        from h2s_checkout.payments.traced_gateway import TracedGateway

        used_gateway = TracedGateway(owned_gateway, api_base=settings.stripe_api_base)
    services = build_services(settings, pool, used_gateway, clock)
    try:
        yield services
    finally:
        if gateway is None:
            await owned_gateway.close()
        await services.event_deliverer.close()
        await pool.close()
