"""The dispatch system's action on a job: it is done, so its held payment is captured."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, Parameter
from msgspec import Meta

from h2s_checkout.api.auth import actor_of, require_scope
from h2s_checkout.api.checkout import IdempotencyKey
from h2s_checkout.api.keyed_answers import keyed_answer
from h2s_checkout.api.openapi import error_responses
from h2s_checkout.api.orders import Note, OrderAnswer
from h2s_checkout.domain import keys
from h2s_checkout.domain.access import Scope
from h2s_checkout.flows.capture import CompleteCommand, JobCompletion

JobId = Annotated[uuid.UUID, Parameter(description="The dispatch job's id")]


class CompleteBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    final_amount_cents: Annotated[int, Meta(ge=1, le=99_999_999)] | None = None
    note: Note | None = None


class JobController(Controller):
    path = "/api/jobs"
    tags = ["jobs"]
    guards = [require_scope(Scope.DISPATCH)]
    security = [{"BearerToken": []}]

    @post(
        "/{job_id:uuid}/complete",
        summary="The job is done: capture its held payment (pay on completion)",
        description=(
            "Marks the job completed and captures final_amount_cents (default: the whole "
            "hold) exactly once, with a provider key from our own row: 202 while the "
            "provider has not confirmed it, 200 once the order is paid for the amount "
            "captured. More than the hold is 422 amount_exceeds_authorization (an extra "
            "charge is a new checkout); a job already completed answers as the first "
            "complete did. An order charged at booking: the job is completed, no money "
            "moves. Not held (unpaid, cancelled, lapsed): 409 not_completable."
        ),
        status_code=200,
        responses={
            202: ResponseSpec(OrderAnswer, description="Capture not yet confirmed"),
            **error_responses(400, 401, 403, 404, 409, 422, 503),
        },
    )
    async def complete(
        self,
        request: Request[Any, Any, Any],
        job_id: JobId,
        job_completion: NamedDependency[JobCompletion],
        data: JSONBody[CompleteBody | None] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[OrderAnswer]:
        body = msgspec.to_builtins(data) if data is not None else {}
        result = await job_completion.complete(
            CompleteCommand(
                job_id=job_id,
                final_amount_cents=data.final_amount_cents if data else None,
                note=data.note if data else None,
                actor=actor_of(request),
                idempotency_key=idempotency_key,
                request_fingerprint=keys.request_digest({"job_id": str(job_id), "body": body}),
            )
        )
        return keyed_answer(result, OrderAnswer)
