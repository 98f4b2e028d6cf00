"""The emulator keeps what it makes: after each full collection its survivors are frozen,
so the next one walks only what is new."""

from __future__ import annotations

import gc

from stripe_checkout_emulator import gc_pauses


def test_survivors_of_each_full_collection_are_frozen() -> None:
    try:
        gc_pauses.freeze_survivors_of_full_collections()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        kept = [[n] for n in range(1000)]  # the emulator's sessions and events
        gc.collect()
        assert gc.get_freeze_count() >= frozen + 1000
    finally:
        if gc_pauses._freeze_after_full in gc.callbacks:
            gc.callbacks.remove(gc_pauses._freeze_after_full)
        gc.unfreeze()
    assert len(kept) == 1000
