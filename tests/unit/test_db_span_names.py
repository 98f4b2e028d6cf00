"""A database call's span is named by the server-side function it calls, else by its
operation and table; never by its arguments."""

from __future__ import annotations

import pytest

from h2s_checkout.store import checkouts, outbox, traces
from h2s_checkout.store.traced_connection import summary


@pytest.mark.parametrize(
    ("query", "name"),
    [
        (checkouts._BEGIN_CHECKOUT, "h2s_begin_checkout"),
        (checkouts._BEGIN_CHECKOUT_TRACED, "h2s_begin_checkout"),  # not h2s_in_trace
        (checkouts._LINK_SESSION_TRACED, "h2s_link_session"),
        (checkouts._REPLAY_CHECKOUTS_TRACED, "h2s_replay_checkouts"),
        (traces._MOVE_TRACED, "h2s_write_trace_rows"),
        (traces._WRITE_ROWS, "h2s_write_trace_rows"),
        (outbox._ENQUEUE_TRACED, "h2s_enqueue_order_event"),
        (checkouts._INSERT_FAILURE, "INSERT h2s_checkout_failures"),  # a column list
        (checkouts._GET_CHECKOUT, "SELECT h2s_checkouts"),
        ("COMMIT;", "COMMIT"),
    ],
)
def test_a_statement_is_named_by_its_function_or_its_table(query, name):
    named, attributes = summary(query)
    assert named == name
    assert attributes["db.system.name"] == "postgresql"
    assert ("db.stored_procedure.name" in attributes) == name.startswith("h2s_")


def test_no_argument_is_part_of_a_name():
    found = summary("select * from h2s_checkouts where email = 'ana@example.com'")
    assert "ana@example.com" not in str(found)
