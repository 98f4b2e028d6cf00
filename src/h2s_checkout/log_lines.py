"""Where log lines go: standard error, a write per event-loop pass rather than per line.

A write to standard error is a system call, and the interpreter lets go of the GIL around
it. In a granian worker the server's own threads are waiting for the GIL at that moment,
so each line cost a hand-over to another thread and back, about as much as everything
else the service does for a replayed checkout. Lines logged by a thread running an event
loop are therefore kept until that loop's current pass has run (`loop.call_soon`), then
written together, in the order they were logged: under load one write carries the lines
of every request the pass answered; alone, a line is written as soon as its request's
work yields.

No line is held longer than that pass, and some not at all: with `MAX_HELD_LINES`
held, for a line at warning or above, from a thread with no running loop, and at the
interpreter's exit, what is held is written at once. Lines go to whatever `sys.stderr`
is when they are written (test capture included); a test reading them after a request
lets its loop run a pass first (`await asyncio.sleep(0)`).
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import threading

MAX_HELD_LINES = 256


class _Held(threading.local):
    def __init__(self) -> None:
        self.lines: list[str] = []
        # The loop whose pass will write them; None when no write is scheduled.
        self.loop: asyncio.AbstractEventLoop | None = None


_held = _Held()


def flush() -> None:
    """Write the lines this thread holds (none, if its loop already ran its pass)."""
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
            # Held for a loop that ended before its pass ran: this line comes out with
            # them, in order, rather than wait for the next one.
            flush()
            return
        held.loop = loop
        loop.call_soon(flush)


class StderrLogger:
    """structlog's logger: each method writes one rendered line."""

    def _line(self, message: str) -> None:
        write(message)

    def _line_at_once(self, message: str) -> None:
        write(message, at_once=True)

    msg = log = debug = info = _line
    warn = warning = error = critical = exception = fatal = _line_at_once
