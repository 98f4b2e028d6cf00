"""Short full collections for the service's workers.

CPython's cyclic collector stops the process for a full (generation 2) collection, which
walks every container object alive: in a worker, the tens of thousands that litestar,
the Stripe SDK, asyncpg and the rest leave behind at start-up, every ~8 s under load,
40-50 ms each on the 2-core bench machine. Every request in flight waits those
milliseconds. Objects made at start-up live as long as the process: freezing them
(``gc.freeze``) takes them out of every later collection, which then walks only what
was made since (2-4 ms in the same measurement). The Stripe emulator, which keeps what it
makes, also freezes each full collection's survivors (stripe_checkout_emulator/gc_pauses.py).
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect once, then keep everything alive now out of later collections."""
    gc.collect()
    gc.freeze()
