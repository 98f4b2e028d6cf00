"""API keys (admin scope): create one (the key shown once), list them, revoke one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from msgspec import Meta

from h2s_checkout.api.auth import actor_of, require_scope
from h2s_checkout.api.openapi import error_responses
from h2s_checkout.api.schemas import ErrorResponse
from h2s_checkout.domain.access import Scope
from h2s_checkout.flows import api_keys
from h2s_checkout.flows.api_keys import KeyRing, KeyView


class KeyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$",
            description="Who uses the key; traces and logs show it as the actor",
        ),
    ]
    scopes: Annotated[
        list[Literal["read", "operate", "admin", "checkout", "catalog", "dispatch"]],
        Meta(min_length=1, max_length=6, description="Independent: give each one needed"),
    ]
    expires_at: Annotated[datetime, Meta(tz=True)] | None = None


class ApiKey(msgspec.Struct):
    key_id: uuid.UUID
    name: str
    scopes: list[str]
    key_hint: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None


class CreatedApiKey(msgspec.Struct):
    key: str
    api_key: ApiKey
    note: str = "Shown once: store it now. Only its hash is kept."


class ApiKeys(msgspec.Struct):
    keys: list[ApiKey]


def _view(view: KeyView) -> ApiKey:
    return msgspec.convert(view, ApiKey, from_attributes=True)


class ApiKeyController(Controller):
    path = "/api/keys"
    tags = ["keys"]
    guards = [require_scope(Scope.ADMIN)]
    security = [{"BearerToken": []}]

    @post(
        "/",
        summary="Create an API key with scopes; the key is in this answer only",
        status_code=201,
        responses={
            409: ResponseSpec(
                ErrorResponse, description="A key in force has this name (key_name_taken)"
            ),
            **error_responses(400, 401, 403, 503),
        },
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[KeyRequest],
        db_pool: NamedDependency[asyncpg.Pool],
        key_ring: NamedDependency[KeyRing],
    ) -> CreatedApiKey:
        created = await api_keys.create_key(
            db_pool,
            name=data.name,
            scopes=list(data.scopes),
            expires_at=data.expires_at,
            actor=actor_of(request),
            now=key_ring.now(),
        )
        return CreatedApiKey(key=created.key, api_key=_view(created.view))

    @get(
        "/",
        summary="Every API key, newest first: never the key itself",
        responses=error_responses(401, 403, 503),
    )
    async def list_keys(self, db_pool: NamedDependency[asyncpg.Pool]) -> ApiKeys:
        return ApiKeys(keys=[_view(v) for v in await api_keys.list_keys(db_pool)])

    @delete(
        "/{key_id:uuid}",
        summary="Revoke an API key: its requests are refused and its sign-in sessions end",
        status_code=200,
        responses=error_responses(401, 403, 404, 503),
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        key_id: FromPath[uuid.UUID],
        db_pool: NamedDependency[asyncpg.Pool],
        key_ring: NamedDependency[KeyRing],
    ) -> ApiKey:
        view = await api_keys.revoke_key(
            db_pool, key_ring, key_id, actor=actor_of(request), now=key_ring.now()
        )
        return _view(view)
