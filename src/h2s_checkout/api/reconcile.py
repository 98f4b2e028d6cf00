"""POST /api/reconcile (operate scope): one reconciler pass now, recorded as the key's."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency

from h2s_checkout.api.auth import actor_of, require_scope
from h2s_checkout.api.openapi import error_responses
from h2s_checkout.domain.access import Scope
from h2s_checkout.flows.reconcile import Reconciler


class ReconcileAnswer(msgspec.Struct):
    ok: bool
    actor: str
    actions: dict[str, int]


class ReconcileController(Controller):
    path = "/api/reconcile"
    tags = ["operations"]
    guards = [require_scope(Scope.OPERATE)]
    security = [{"BearerToken": []}]

    @post(
        "/",
        summary="Run one reconciler pass now (it also runs on its own every 30 s)",
        description=(
            "Resumes or cleans up stuck checkouts and asks the provider about sessions "
            "whose event never came, as the background pass does; the trace rows and log "
            "lines it writes name the key as the actor. Safe beside other passes: work "
            "is leased, so no checkout is taken twice."
        ),
        status_code=200,
        responses=error_responses(401, 403, 503),
    )
    async def run(
        self, request: Request[Any, Any, Any], reconciler: NamedDependency[Reconciler]
    ) -> ReconcileAnswer:
        actor = actor_of(request)
        report = await reconciler.run_once(actor=actor)
        return ReconcileAnswer(ok=True, actor=actor, actions=dict(report.actions))
