"""What no route can take, refused before any route reads it: a NUL anywhere in the request
and JSON nested deeper than ``MAX_JSON_DEPTH``, each a 400 invalid_request.

PostgreSQL's text and jsonb hold no NUL (a path id, a search, a name sent as ``\\u0000``
was a 500 from the database), and a JSON decoder that meets 32,000 nested arrays recurses
until Python stops it (a 500 with a RecursionError). Both are checked here, once for every
route: the request's target and headers by ``target_refusal`` (called by the request
middleware for every request), its body by ``body_refusal`` (called by ``BodyScreen``, in
front of Litestar's router, for every body a route may read, and by the checkout fast path
for the bodies it decodes itself).

The depth is counted without decoding: strings are cut out and the brackets left are summed
as +1 and -1, each step in C (``re``, ``bytes.translate``, ``itertools.accumulate``), and
only for a body with more than ``MAX_JSON_DEPTH`` opening brackets in all, so a checkout's
body (about 4 deep, under 20 brackets) costs two ``bytes.count`` calls.
"""

from __future__ import annotations

import re
from itertools import accumulate

import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send

from h2s_checkout.api.errors import error_body
from h2s_checkout.api.request_body import read_body, replaying

# A checkout body is 4 deep and a Stripe event under 10; nothing we take needs more.
MAX_JSON_DEPTH = 64
NUL_MESSAGE = "the request holds a NUL character (\\u0000), which no value may contain"
DEPTH_MESSAGE = f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep"

# A JSON string, or an unterminated one up to the end: the match can always complete, so
# cutting strings out is one pass however the quotes fall.
_STRING = re.compile(rb'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
# Openers to 1 and closers to 255, which a signed-byte view reads as -1.
_SIGNED = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_SLICE = 4096
# \u0000 as an escape: its backslash preceded by an even run of backslashes (an odd run
# would make it a literal backslash followed by the text "u0000").
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_FORM = b"application/x-www-form-urlencoded"
# Methods whose body a route may read.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_encode = msgspec.json.Encoder().encode


def json_depth(body: bytes, stop_above: int | None = None) -> int:
    """How deep ``body``'s arrays and objects nest (unbalanced brackets count as open).

    With ``stop_above``, the count may stop at the first slice that goes deeper: a body of
    a megabyte of "[" is refused after its first few thousand brackets, not its last.
    """
    brackets = memoryview(_STRING.sub(b"", body).translate(_SIGNED, _NOT_BRACKETS)).cast("b")
    depth = deepest = 0
    for start in range(0, len(brackets), _SLICE):
        levels = list(accumulate(brackets[start : start + _SLICE], initial=depth))
        deepest, depth = max(deepest, max(levels)), levels[-1]
        if stop_above is not None and deepest > stop_above:
            break
    return deepest


def body_refusal(
    body: bytes, content_type: bytes | None = None, *, count_depth: bool = True
) -> str | None:
    """Why no route may read ``body``, or None. A form's NUL is ``%00``; any other body is
    read as JSON (routes decode JSON whatever its content type says). ``count_depth``
    False: the NUL checks only (see BodyScreen)."""
    if b"\x00" in body:
        return NUL_MESSAGE
    if content_type is not None and content_type.startswith(_FORM):
        return NUL_MESSAGE if b"%00" in body else None
    if b"\\u0000" in body and _NUL_ESCAPE.search(body):
        return NUL_MESSAGE
    if (
        count_depth
        and body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH
        and json_depth(body, stop_above=MAX_JSON_DEPTH) > MAX_JSON_DEPTH
    ):
        return DEPTH_MESSAGE
    return None


def target_refusal(scope: Scope) -> str | None:
    """Why the request's path, query or headers cannot be taken, or None."""
    if "\x00" in scope["path"]:
        return NUL_MESSAGE
    query: bytes = scope.get("query_string", b"")  # type: ignore[assignment]
    if b"%00" in query or b"\x00" in query:
        return NUL_MESSAGE
    # One search over the values joined: a third of a loop's cost per request.
    if b"\x00" in b"".join([value for _, value in scope["headers"]]):
        return NUL_MESSAGE
    return None


async def send_refusal(send: Send, message: str) -> None:
    """The 400 invalid_request answer, as the error table answers it."""
    payload = _encode(error_body("invalid_request", message))
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def _content_type(scope: Scope) -> bytes | None:
    """The body's content type; a form's if any Content-Type says form (sent twice, which
    one a parser believes is its own business: the form's NUL rule must hold either way)."""
    found = None
    for name, value in scope["headers"]:
        if name.lower() == b"content-type":
            found = value.lower()
            if found.startswith(_FORM):
                return found
    return found


class BodyScreen:
    """ASGI in front of Litestar's router: every body a route may read is read here first
    (up to ``max_body_bytes``, the largest any route takes) and refused if ``body_refusal``
    says so; else handed on as it came. A larger body goes on unread: the route's own
    limit answers it 413.

    The depth is counted in bodies up to ``depth_body_bytes`` (H2S_MAX_BODY_BYTES, what
    every route but Stripe's webhook takes), whose worst case costs about 2 ms. Only the
    webhook takes more (1 MiB: the count's worst case would be some 30 ms for anyone to
    make us spend), and it decodes a body only once Stripe's signature over it is verified,
    which no one else can make; its NULs are still refused here."""

    def __init__(self, inner: ASGIApp, *, max_body_bytes: int, depth_body_bytes: int) -> None:
        self._inner = inner
        self._max_body = max_body_bytes
        self._depth_body = depth_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:  # type: ignore[typeddict-item]
            await self._inner(scope, receive, send)
            return
        body, rest = await read_body(receive, self._max_body)
        if rest is None:
            refusal = body_refusal(
                body, _content_type(scope), count_depth=len(body) <= self._depth_body
            )
            if refusal is not None:
                await send_refusal(send, refusal)
                return
        await self._inner(scope, replaying(body, rest, receive), send)
