"""Where log lines go: standard error, one write per interval rather than per line.

A write to standard error is a system call, and the interpreter lets go of the GIL around
it. In a granian worker the server's own threads are waiting for the GIL at that moment,
so each write cost a hand-over to another thread and back. Lines logged by a thread
running an event loop are therefore kept for ``FLUSH_INTERVAL_S`` (`loop.call_later`),
then written together, in the order they were logged. Under load one write carries the
lines of every request of those 50 ms; a write per event-loop pass, as before, still cost
a replay about a tenth of its CPU (docs/benchmarks.md).

Some lines are not held at all: with `MAX_HELD_LINES` held, for a line at warning or
above, from a thread with no running loop, and at the interpreter's exit, what is held is
written at once. The app's lifespan writes what is held when it ends (a forked worker
process leaves without running ``atexit``). Lines held for a loop that ended first come
out with that thread's next line. A process killed outright loses at most the info lines
of its last interval. Lines go to whatever `sys.stderr` is when they are written (test
capture included); a test reading them after a request calls `flush()` first.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import threading

MAX_HELD_LINES = 256
FLUSH_INTERVAL_S = 0.05


class _Held(threading.local):
    def __init__(self) -> None:
        self.lines: list[str] = []
        # The loop whose timer will write them; None when no write is scheduled.
        self.loop: asyncio.AbstractEventLoop | None = None


_held = _Held()


def flush() -> None:
    """Write the lines this thread holds (none, if its loop's timer already wrote them)."""
    held = _held
    held.loop = None
    if not held.lines:
        return
    text = "".join(held.lines)
    held.lines.clear()
    stream = sys.stderr
    stream.write(text)
    stream.flush()


atexit.register(flush)


def write(line: str, *, at_once: bool = False) -> None:
    """Log one line (without its newline)."""
    held = _held
    held.lines.append(line + "\n")
    if at_once or len(held.lines) >= MAX_HELD_LINES:
        flush()
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        flush()
        return
    if held.loop is not loop:
        if held.loop is not None:
            # Held for a loop that ended before its interval ran: this line comes out with
            # them, in order, rather than wait for the next one.
            flush()
            return
        held.loop = loop
        loop.call_later(FLUSH_INTERVAL_S, flush)


class StderrLogger:
    """structlog's logger: each method writes one rendered line."""

    def _line(self, message: str) -> None:
        write(message)

    def _line_at_once(self, message: str) -> None:
        write(message, at_once=True)

    msg = log = debug = info = _line
    warn = warning = error = critical = exception = fatal = _line_at_once
