"""A request's body read below the router, and handed on to the next layer as it came."""

from __future__ import annotations

from typing import Any

from litestar.types import Receive, ReceiveMessage


async def read_body(receive: Receive, limit: int) -> tuple[bytes, list[ReceiveMessage] | None]:
    """The body, if it all arrives within ``limit`` bytes; else what was read so far and
    the messages that carried it (``rest``), for the next layer to read again."""
    chunks: list[bytes] = []
    messages: list[ReceiveMessage] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return b"", messages  # the client went away: the next layer sees the same
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", messages
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


def replaying(body: bytes, rest: list[ReceiveMessage] | None, receive: Receive) -> Receive:
    """A receive that gives back what was read (in one message, or as it came), then
    the client's own."""
    whole = {"type": "http.request", "body": body, "more_body": False}
    pending: list[Any] = list(rest) if rest is not None else [whole]

    async def replayed() -> ReceiveMessage:
        if pending:
            return pending.pop(0)  # type: ignore[no-any-return]
        return await receive()

    return replayed
