"""Log lines: held for an interval on an event loop, then written together, in order."""

from __future__ import annotations

import asyncio

import pytest

from h2s_checkout.observability import log_lines

MonkeyPatch = pytest.MonkeyPatch


class Stream:
    """Stands in for sys.stderr: what each write call carried."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return "".join(self.writes)


def install(monkeypatch: MonkeyPatch) -> Stream:
    """In the test's body: pytest's own capture sets sys.stderr after fixtures run."""
    log_lines.flush()
    fake = Stream()
    monkeypatch.setattr("sys.stderr", fake)
    return fake


def held_by_a_loop_that_ended(line: str) -> None:
    """Log ``line`` in a loop that stops and closes before the pass that would write it."""
    loop = asyncio.new_event_loop()

    async def log_then_stop() -> None:
        log_lines.write(line)
        loop.stop()

    task = loop.create_task(log_then_stop())
    loop.run_forever()
    assert task.done()
    loop.close()


def test_outside_an_event_loop_each_line_is_written_at_once(monkeypatch: MonkeyPatch) -> None:
    stream = install(monkeypatch)
    log_lines.write("one")
    assert stream.writes == ["one\n"]
    log_lines.write("two")
    assert stream.writes == ["one\n", "two\n"]


async def written(stream: Stream) -> None:
    """Wait, well past the interval, for what is held to come out (at most 5 s)."""
    for _ in range(500):
        if stream.writes:
            return
        await asyncio.sleep(0.01)


async def test_lines_of_one_interval_go_out_in_one_write_after_it(
    monkeypatch: MonkeyPatch,
) -> None:
    stream = install(monkeypatch)

    async def request(n: int) -> None:
        log_lines.write(f"request {n} begins")
        await asyncio.sleep(0)
        log_lines.write(f"request {n} ends")

    log_lines.write("first")
    assert stream.writes == []  # held while this step runs
    await asyncio.gather(request(1), request(2))
    await asyncio.sleep(0)
    assert stream.writes == []  # and the passes after it, within the interval
    await written(stream)
    assert stream.writes == [
        "first\nrequest 1 begins\nrequest 2 begins\nrequest 1 ends\nrequest 2 ends\n"
    ]


async def test_a_line_is_held_for_the_interval_then_written(monkeypatch: MonkeyPatch) -> None:
    stream = install(monkeypatch)
    loop = asyncio.get_running_loop()
    logged_at = loop.time()
    log_lines.write("alone")
    await asyncio.sleep(0)
    assert stream.writes == []
    await written(stream)
    assert stream.writes == ["alone\n"]
    assert loop.time() - logged_at >= log_lines.FLUSH_INTERVAL_S * 0.9
    log_lines.write("again")  # a new interval starts with the next line
    await written(stream)
    await asyncio.sleep(log_lines.FLUSH_INTERVAL_S * 2)
    assert stream.writes == ["alone\n", "again\n"]


async def test_warnings_go_out_at_once_after_what_was_held(monkeypatch: MonkeyPatch) -> None:
    stream = install(monkeypatch)
    logger = log_lines.StderrLogger()
    logger.info("held")
    logger.warning("now")
    assert stream.writes == ["held\nnow\n"]
    logger.error("again")
    assert stream.writes == ["held\nnow\n", "again\n"]


async def test_no_more_than_the_bound_is_held(monkeypatch: MonkeyPatch) -> None:
    stream = install(monkeypatch)
    for n in range(log_lines.MAX_HELD_LINES):
        log_lines.write(str(n))
    assert len(stream.writes) == 1
    assert stream.text.splitlines() == [str(n) for n in range(log_lines.MAX_HELD_LINES)]


def test_lines_held_for_a_loop_that_ended_come_out_with_the_next_line(
    monkeypatch: MonkeyPatch,
) -> None:
    stream = install(monkeypatch)
    held_by_a_loop_that_ended("last words")
    assert stream.writes == []

    async def next_loop() -> None:
        log_lines.write("next")
        assert stream.text == "last words\nnext\n"

    asyncio.run(next_loop())


def test_what_is_held_at_exit_is_written(monkeypatch: MonkeyPatch) -> None:
    stream = install(monkeypatch)
    held_by_a_loop_that_ended("on the way out")
    assert stream.writes == []
    log_lines.flush()  # registered with atexit
    assert stream.text == "on the way out\n"
