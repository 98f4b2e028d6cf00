"""Views for people on call (read scope): a checkout's timeline and its linked rows."""

from __future__ import annotations

from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import Dependency, FromPath

from h2s_checkout.api.auth import require_scope
from h2s_checkout.api.openapi import error_responses
from h2s_checkout.api.schemas import CheckoutView, Timeline
from h2s_checkout.domain.access import Scope
from h2s_checkout.flows import inspect_checkout
from h2s_checkout.payments.port import PaymentGateway

_ERRORS = error_responses(401, 403, 404, 503)


class CheckoutAdminController(Controller):
    path = "/api"
    tags = ["admin"]
    guards = [require_scope(Scope.READ)]
    security = [{"BearerToken": []}]

    @get(
        "/checkouts/{ref:str}/timeline",
        summary="Every step of a checkout, in order",
        responses=_ERRORS,
    )
    async def timeline(
        self, state: State, ref: FromPath[str], db_pool: NamedDependency[asyncpg.Pool]
    ) -> Timeline:
        found = await inspect_checkout.timeline(db_pool, ref, state.settings.trace_url_template)
        return msgspec.convert(found, Timeline)

    @get(
        "/orders/{order_id:str}/timeline",
        summary="The timeline of an order's checkout",
        responses=_ERRORS,
    )
    async def order_timeline(
        self, state: State, order_id: FromPath[str], db_pool: NamedDependency[asyncpg.Pool]
    ) -> Timeline:
        found = await inspect_checkout.timeline(
            db_pool, order_id, state.settings.trace_url_template
        )
        return msgspec.convert(found, Timeline)

    @get(
        "/checkouts/{ref:str}",
        summary="A checkout with its order, job and the provider's view of its session",
        responses=_ERRORS,
    )
    async def checkout(
        self,
        ref: FromPath[str],
        db_pool: NamedDependency[asyncpg.Pool],
        payment_gateway: Annotated[PaymentGateway, Dependency(skip_validation=True)],
    ) -> CheckoutView:
        view = await inspect_checkout.checkout_view(db_pool, payment_gateway, ref)
        return msgspec.convert(view, CheckoutView)
