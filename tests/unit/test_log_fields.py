"""The fields every log line of a request carries: bound, merged, restored and cleared."""

from __future__ import annotations

import asyncio
import json

import pytest

from h2s_checkout.observability import log_lines
from h2s_checkout.observability.logging import (
    acting_as,
    bind_actor,
    bind_log_fields,
    bound_log_fields,
    clear_request_context,
    configure_logging,
    current_actor,
    get_logger,
    log_fields,
    unbind_log_fields,
)

log = get_logger("h2s_checkout.test")


class Stream:
    """Stands in for sys.stderr."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def install(monkeypatch: pytest.MonkeyPatch) -> Stream:
    log_lines.flush()
    stream = Stream()
    monkeypatch.setattr("sys.stderr", stream)
    return stream


@pytest.fixture(autouse=True)
def json_lines():
    configure_logging("info", "json")
    clear_request_context()
    yield
    clear_request_context()


def lines(stream: Stream) -> list[dict]:
    log_lines.flush()
    return [json.loads(line) for line in stream.text.splitlines()]


def test_a_line_carries_the_bound_fields_under_its_own(monkeypatch):
    stream = install(monkeypatch)
    bind_log_fields(request_id="r-1", checkout_trace_id="c-1")
    bind_actor("support-cy")

    log.info("request", status=201, checkout_trace_id="own")

    (line,) = lines(stream)
    assert line["event"] == "request"
    assert line["request_id"] == "r-1"
    assert line["actor"] == "support-cy"
    assert line["checkout_trace_id"] == "own"  # the line's own value wins
    assert line["status"] == 201


def test_fields_are_unbound_restored_and_cleared(monkeypatch):
    stream = install(monkeypatch)
    bind_log_fields(request_id="r-2", checkout_trace_id="c-2")
    unbind_log_fields("checkout_trace_id")
    with bound_log_fields(refund_id="f-1"), acting_as("reconciler"):
        log.info("inside")
        assert current_actor() == "reconciler"
    log.info("after")
    clear_request_context()
    log.info("cleared")

    inside, after, cleared = lines(stream)
    assert (inside["request_id"], inside["refund_id"], inside["actor"]) == (
        "r-2",
        "f-1",
        "reconciler",
    )
    assert "checkout_trace_id" not in inside
    assert after["request_id"] == "r-2"
    assert "refund_id" not in after
    assert "actor" not in after
    assert set(cleared) == {"event", "level", "timestamp"}
    assert current_actor() is None


async def test_a_task_keeps_the_fields_it_started_with_and_keeps_its_own():
    bind_log_fields(request_id="r-3")
    started = asyncio.Event()
    seen: dict[str, object] = {}

    async def background() -> None:
        bind_log_fields(checkout_trace_id="c-3")
        started.set()
        await asyncio.sleep(0)
        seen.update(log_fields())

    task = asyncio.create_task(background())
    await started.wait()
    clear_request_context()  # the request ends while its task goes on
    await task

    assert seen == {"request_id": "r-3", "checkout_trace_id": "c-3"}
    assert dict(log_fields()) == {}
