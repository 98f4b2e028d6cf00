"""Full collections walk only what is new: start-up objects and, in the emulator, the
survivors of each full collection are frozen."""

from __future__ import annotations

import gc

from h2s_checkout import gc_pauses


def test_startup_objects_are_frozen_and_later_survivors_only_where_asked() -> None:
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

        gc_pauses.freeze_survivors_of_full_collections()
        frozen = gc.get_freeze_count()
        kept += [[n] for n in range(1000)]
        gc.collect()
        assert gc.get_freeze_count() >= frozen + 1000  # the emulator's state joins them
    finally:
        if gc_pauses._freeze_after_full in gc.callbacks:
            gc.callbacks.remove(gc_pauses._freeze_after_full)
        gc.unfreeze()
    assert len(kept) == 2000
