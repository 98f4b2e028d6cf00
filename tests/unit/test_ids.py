"""Checkout, order and job ids: time-ordered (UUIDv7), distinct, and stable for old ids."""

from __future__ import annotations

import re
import uuid

from hypothesis import given
from hypothesis import strategies as st

from h2s_checkout.domain.keys import (
    ORDER_ID_PATTERN,
    job_id_for,
    new_checkout_id,
    order_id_for,
)

# 2026-11-27 08:00:00 UTC and the next minute.
MS = 1_795_766_400_000
MINUTE = 60_000


def test_a_checkout_id_is_a_uuid7_carrying_its_milliseconds():
    checkout_id = new_checkout_id(MS + 123)
    assert checkout_id.version == 7
    assert checkout_id.variant == uuid.RFC_4122
    assert checkout_id.int >> 80 == MS + 123


def test_checkout_ids_sort_by_the_millisecond_they_were_made():
    ids = [new_checkout_id(MS + step) for step in (0, 1, 2, 1_000, MINUTE, 3 * MINUTE)]
    assert sorted(ids) == ids


def test_order_ids_sort_by_minute_and_match_the_api_pattern():
    first = order_id_for(new_checkout_id(MS))
    later = order_id_for(new_checkout_id(MS + MINUTE))
    assert re.fullmatch(ORDER_ID_PATTERN, first)
    assert re.fullmatch(r"ORD-[0-9A-F]{16}", first)
    assert first < later
    assert first[4:10] == f"{(MS // MINUTE) & 0xFFFFFF:06X}"


def test_ids_made_in_the_same_millisecond_differ_in_every_derived_id():
    made = [new_checkout_id(MS) for _ in range(5_000)]
    assert len(set(made)) == len(made)
    assert len({order_id_for(c) for c in made}) == len(made)
    assert len({job_id_for(c) for c in made}) == len(made)


@given(st.integers(min_value=0, max_value=(1 << 48) - 1))
def test_ids_are_pure_functions_of_the_checkout_id(ms):
    checkout_id = new_checkout_id(ms)
    again = uuid.UUID(str(checkout_id))
    assert order_id_for(again) == order_id_for(checkout_id)
    assert job_id_for(again) == job_id_for(checkout_id)
    job_id = job_id_for(checkout_id)
    assert job_id.version == 8
    assert job_id.variant == uuid.RFC_4122
    assert job_id.int >> 80 == ms
    assert job_id != checkout_id


def test_a_random_v4_checkout_id_keeps_the_ids_it_was_given():
    # Checkouts made before ids were time-ordered: a resumed one must keep its order and
    # job ids (they are also stored, but the rule for them must not move).
    old = uuid.UUID("9f1c2e4a-7b3d-4c5e-8f60-718293a4b5c6")
    assert order_id_for(old) == "ORD-9F1C2E4A7B3D4C5E"
    assert job_id_for(old) == uuid.uuid5(old, "dispatch-job")
