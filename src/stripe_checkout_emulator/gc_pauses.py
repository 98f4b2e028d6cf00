"""Short full collections for an emulator that keeps every session and event it made.

CPython's cyclic collector stops the process for a full (generation 2) collection, which
walks every container object alive; in the emulator that is a state that only grows. After
each full collection its survivors join the frozen objects (``gc.freeze``), so the next one
walks only what is new. A cycle among frozen objects that dies later is not collected; a
process doing this must keep, not drop, what it made, which is what the emulator does.
"""

from __future__ import annotations

import gc
from typing import Any


def _freeze_after_full(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def freeze_survivors_of_full_collections() -> None:
    """Collect once and freeze what is alive now; from then on, after each full
    collection, freeze its survivors too."""
    gc.collect()
    gc.freeze()
    if _freeze_after_full not in gc.callbacks:
        gc.callbacks.append(_freeze_after_full)
