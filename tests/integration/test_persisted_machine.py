"""The machine is persisted: each transition and its trace row commit together."""

from __future__ import annotations

import uuid

import pytest
from statemachine.exceptions import TransitionNotAllowed

from h2s_checkout.domain.errors import IllegalTransition
from h2s_checkout.flows.machine_io import machine_at
from h2s_checkout.store.traces import TraceWriter


async def new_checkout(db) -> uuid.UUID:
    checkout_id = uuid.uuid4()
    # A bare checkout row, as phase 1 leaves one before its first transition.
    await db.execute(
        "insert into h2s_checkouts (checkout_id, state, key_source, derived_key,"
        " request_fingerprint, request_body, stripe_idempotency_key)"
        " values ($1, 'pending_payment', 'derived', 'k', 'f', '{}', $2)",
        checkout_id,
        f"test-{checkout_id}",
    )
    return checkout_id


async def stored_state(db, checkout_id) -> str:
    return await db.fetchval("select state from h2s_checkouts where checkout_id = $1", checkout_id)


async def trace(db, checkout_id) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        "select event, from_state, to_state from h2s_checkout_traces"
        " where checkout_id = $1 and kind = 'transition' order by at, seq",
        checkout_id,
    )
    return [tuple(r) for r in rows]


async def test_a_rebuilt_machine_continues_from_the_stored_state(db):
    checkout_id = await new_checkout(db)
    async with db.transaction():
        machine = await machine_at("pending_payment", TraceWriter(db, checkout_id))
        await machine.send("queue_job")

    # A later phase, as after a restart: only the stored state is known.
    async with db.transaction():
        machine = await machine_at(
            await stored_state(db, checkout_id), TraceWriter(db, checkout_id)
        )
        await machine.send("fail")
        await machine.send("clean")

    assert await stored_state(db, checkout_id) == "cleaned"
    assert await trace(db, checkout_id) == [
        ("queue_job", "pending_payment", "job_queued"),
        ("fail", "job_queued", "failed"),
        ("clean", "failed", "cleaned"),
    ]


async def test_a_rolled_back_phase_leaves_neither_state_nor_trace(db):
    checkout_id = await new_checkout(db)
    with pytest.raises(RuntimeError):  # noqa: PT012 - the transaction is the subject
        async with db.transaction():
            machine = await machine_at("pending_payment", TraceWriter(db, checkout_id))
            await machine.send("queue_job")
            raise RuntimeError("the rest of the phase failed")
    assert await stored_state(db, checkout_id) == "pending_payment"
    assert await trace(db, checkout_id) == []


async def test_an_illegal_transition_raises_and_writes_nothing(db):
    checkout_id = await new_checkout(db)
    machine = await machine_at("pending_payment", TraceWriter(db, checkout_id))
    with pytest.raises(TransitionNotAllowed):
        await machine.send("create_session")
    assert await stored_state(db, checkout_id) == "pending_payment"
    assert await trace(db, checkout_id) == []


async def test_a_machine_built_from_a_stale_state_is_refused(db):
    checkout_id = await new_checkout(db)
    stale = await machine_at("pending_payment", TraceWriter(db, checkout_id))
    async with db.transaction():
        fresh = await machine_at("pending_payment", TraceWriter(db, checkout_id))
        await fresh.send("queue_job")

    with pytest.raises(IllegalTransition):
        async with db.transaction():
            await stale.send("fail")
    assert await stored_state(db, checkout_id) == "job_queued"
    assert await trace(db, checkout_id) == [("queue_job", "pending_payment", "job_queued")]
