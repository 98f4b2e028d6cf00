"""Full collections walk only what is new: a worker's start-up objects are frozen, and
later survivors are not."""

from __future__ import annotations

import gc

from h2s_checkout import gc_pauses


def test_startup_objects_are_frozen_and_later_survivors_are_not() -> None:
    try:
        gc_pauses.freeze_startup_objects()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        kept = [[n] for n in range(1000)]  # new containers that stay alive
        gc.collect()
        # A worker freezes once, at start: later survivors are not frozen. The count
        # can fall (a frozen object whose last reference was in collected garbage is
        # freed), never grow.
        assert gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
    assert len(kept) == 1000
