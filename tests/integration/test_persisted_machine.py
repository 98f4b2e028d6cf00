"""The machine is persisted: each decided transition and its trace rows commit together."""

from __future__ import annotations

import uuid

import pytest

from h2s_checkout.domain.errors import IllegalTransition
from h2s_checkout.domain.machine import TRANSITIONS
from h2s_checkout.store.traces import Step, write_transition


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
        " where checkout_id = $1 and kind = 'transition' order by seq",
        checkout_id,
    )
    return [tuple(r) for r in rows]


async def move(db, checkout_id, event: str, steps: list[Step] | None = None) -> str:
    """What a flow does: read the stored state, let the machine decide, write the change."""
    state = await stored_state(db, checkout_id)
    target = TRANSITIONS.target(state, event)
    await write_transition(db, checkout_id, event, state, target, steps=steps)
    return target


async def test_a_later_phase_continues_from_the_stored_state(db):
    checkout_id = await new_checkout(db)
    async with db.transaction():
        await move(db, checkout_id, "queue_job")

    # A later phase, as after a restart: only the stored state is known.
    async with db.transaction():
        await move(db, checkout_id, "fail")
        await move(db, checkout_id, "clean")

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
            await move(db, checkout_id, "queue_job", [Step.now("order_and_job.created")])
            raise RuntimeError("the rest of the phase failed")
    assert await stored_state(db, checkout_id) == "pending_payment"
    assert await db.fetchval("select count(*) from h2s_checkout_traces") == 0


async def test_an_illegal_transition_raises_and_writes_nothing(db):
    checkout_id = await new_checkout(db)
    with pytest.raises(IllegalTransition):
        await move(db, checkout_id, "create_session")
    assert await stored_state(db, checkout_id) == "pending_payment"
    assert await trace(db, checkout_id) == []


async def test_a_decision_made_on_a_stale_state_is_refused(db):
    checkout_id = await new_checkout(db)
    stale = await stored_state(db, checkout_id)
    await move(db, checkout_id, "queue_job")  # another process moves the checkout

    with pytest.raises(IllegalTransition):
        async with db.transaction():
            await write_transition(
                db, checkout_id, "fail", stale, TRANSITIONS.target(stale, "fail")
            )
    assert await stored_state(db, checkout_id) == "job_queued"
    assert await trace(db, checkout_id) == [("queue_job", "pending_payment", "job_queued")]


async def test_steps_and_their_transition_take_seq_in_the_order_they_happened(db):
    checkout_id = await new_checkout(db)
    steps = [Step.now(f"step.{n}") for n in range(5)]
    await move(db, checkout_id, "queue_job", steps)

    rows = await db.fetch(
        "select seq, event, at from h2s_checkout_traces where checkout_id = $1 order by seq",
        checkout_id,
    )
    assert [r["event"] for r in rows] == [*(f"step.{n}" for n in range(5)), "queue_job"]
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
