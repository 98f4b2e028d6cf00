"""The API's pattern for an endpoint's event types admits every type the service emits,
and nothing else: a type added to domain/events.py without the pattern could only be had
through `*`."""

import re

from h2s_checkout.api.schemas import EventTypeName
from h2s_checkout.domain.events import ALL_TYPES, SUBSCRIBABLE_TYPES


def _pattern() -> re.Pattern[str]:
    return re.compile(EventTypeName.__metadata__[0].pattern)


def test_every_subscribable_type_matches_the_api_pattern() -> None:
    pattern = _pattern()
    assert [t for t in (*SUBSCRIBABLE_TYPES, ALL_TYPES) if not pattern.match(t)] == []


def test_the_pattern_admits_no_other_type() -> None:
    pattern = _pattern()
    for name in ("order.shipped", "job.started", "catalog.item_deleted", "order.paid.x", ""):
        assert not pattern.match(name), name
