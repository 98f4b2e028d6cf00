"""The round-trip count: statements per checkout, less what is not the checkout's own."""

from __future__ import annotations

import pytest

from h2s_bench import dbstats

_BEGIN = "select * from h2s_begin_checkout($1, $2)"
_LINK = "select * from h2s_link_session($1, $2)"
# What pg_stat_statements recorded while asyncpg opened one connection (PostgreSQL 18).
_OPENING = [
    "WITH RECURSIVE typeinfo_tree(\n    oid, ns, name, kind, basetype, elemtype) AS (select 1)",
    "SELECT current_setting($1) AS cur, set_config($2, $3, $4) AS new",
    "SELECT set_config($2, $1, $3)",
]


def _snapshot(calls: dict[str, int]) -> dbstats.Snapshot:
    return {(i, True): (query, n) for i, (query, n) in enumerate(calls.items())}


def test_a_connection_opened_during_the_count_is_not_a_round_trip_of_the_checkouts():
    before = _snapshot({_BEGIN: 10, _LINK: 10, **dict.fromkeys(_OPENING, 2)})
    after = _snapshot({_BEGIN: 110, _LINK: 110, **dict.fromkeys(_OPENING, 3)})

    trips = dbstats.delta(before, after, checkouts=100)

    assert trips.statements == pytest.approx(2.03)
    assert trips.connection_setup == pytest.approx(0.03)
    assert trips.round_trips == pytest.approx(2.00)


def test_a_pool_reset_counts_once_and_every_other_statement_counts():
    reset = [dbstats.POOL_RESET_FIRST, *dbstats.POOL_RESET_REST]
    after = _snapshot({_BEGIN: 100, "select 1": 50, **dict.fromkeys(reset, 100)})

    trips = dbstats.delta({}, after, checkouts=100)

    assert trips.pool_resets == 1.0
    assert trips.connection_setup == 0.0
    assert trips.round_trips == pytest.approx(1.0 + 0.5 + 1.0)
