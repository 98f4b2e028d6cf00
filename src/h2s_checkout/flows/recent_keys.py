"""The claim keys a worker answered lately: a hint that the next request with one of them
is a replay, so phase 1 can be called without building a new checkout first.

A hint is never trusted for what it decides: PostgreSQL still looks the key up, and when
the key has no answered checkout after all (it expired, was cleaned, or the hint outlived
its window), the call writes nothing and the whole call follows. A wrong or missing hint
costs what a request cost without hints (one more round trip at most); it cannot change
an answer. Each worker keeps its own: a replay that reaches another replica takes the
whole call, as before.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

DEFAULT_CAPACITY = 50_000  # about 6 MB at most: a key (64 hex chars) and a datetime each


class RecentKeys:
    """Claim keys, each until a moment; the oldest remembered goes first when full."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        # Not a dict: taking a dict's oldest key walks past every key deleted before it
        # until the dict is next resized, about 30 µs per new checkout once the worker has
        # answered `capacity` keys (docs/benchmarks.md); an OrderedDict's is O(1).
        self._until: OrderedDict[str, datetime] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def remember(self, key: str, until: datetime) -> None:
        self._until[key] = until
        self._until.move_to_end(key)  # the order is the eviction order
        if len(self._until) > self._capacity:
            self._until.popitem(last=False)

    def expects_replay(self, key: str, now: datetime) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until <= now:
            del self._until[key]
            return False
        return True

    def forget(self, key: str) -> None:
        self._until.pop(key, None)
