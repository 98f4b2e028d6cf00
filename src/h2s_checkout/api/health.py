"""Liveness and readiness: /healthz says the process runs, /readyz that it can serve."""

from __future__ import annotations

import asyncpg
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from h2s_checkout.api.schemas import Health
from h2s_checkout.store.migrate import pending_migrations_async
from h2s_checkout.store.pool import UNAVAILABLE_OR_DOWN, connection, database_budget

# A readiness probe wants its answer fast; never longer than the pool's own bound.
READY_TIMEOUT_S = 2.0


class HealthController(Controller):
    path = "/"
    tags = ["health"]
    include_in_schema = True

    @get("/healthz", summary="The process is up")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get(
        "/readyz",
        summary="Database reachable and every migration applied",
        responses={503: ResponseSpec(Health, description="Not ready; the body says why")},
    )
    async def readyz(self, db_pool: NamedDependency[asyncpg.Pool]) -> Response[Health]:
        try:
            with database_budget(READY_TIMEOUT_S):
                async with connection(db_pool) as conn:
                    missing = await pending_migrations_async(conn)
        except (*UNAVAILABLE_OR_DOWN, asyncpg.PostgresError) as exc:
            cause = exc.__cause__ or exc
            return Response(
                Health(status="unavailable", checks={"database": type(cause).__name__}),
                status_code=503,
                headers={"Retry-After": "2"},
            )
        if missing:
            return Response(
                Health(
                    status="unavailable", checks={"database": "ok", "pending_migrations": missing}
                ),
                status_code=503,
            )
        return Response(Health(status="ok", checks={"database": "ok", "migrations": "ok"}))
