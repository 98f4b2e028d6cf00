"""POST /api/checkout below Litestar's routing, answered as the route answers it.

Almost every request a checkout service gets is this one: a storefront's new checkout, or
its retry (a double click, a timeout, a queue redelivering). Of what the worker spent on
it beyond the flow's own work, most was the framework's: routing, the handler's
parameters and dependencies, the body decoded into ``CheckoutRequest``, the Response
object. When a request is a plain JSON POST to /api/checkout whose body decodes strictly
into ``CheckoutRequest``, this layer decodes it once and hands it to
``CheckoutFlow.begin``, as the route does, and answers what the route answers: the new
checkout or the stored answer, or the route's error answer (``api/errors.py``) for each
error the flow raises, and a 500 with the trace id for the unexpected.

Anything else goes to Litestar with the body as it arrived, and the route decides it:
another path or method, no JSON content type, no or too large a Content-Length, a body
that does not decode (the route's 400 and 422 answers, with their fields), an
Idempotency-Key the route would refuse. The route stays the reference (OpenAPI, every
validation answer); tests send each case both ways. The request middleware around this
layer gives the request its id, log line, metrics and database budget either way.
"""

from __future__ import annotations

import msgspec
from litestar import Litestar
from litestar.types import ASGIApp, Receive, Scope, Send

from h2s_checkout.api.auth import checkout_caller
from h2s_checkout.api.checkout import answer_headers, begin_counted, to_command
from h2s_checkout.api.client_address import ClientAddresses
from h2s_checkout.api.errors import checkout_error_answer, unexpected_error_body
from h2s_checkout.api.request_body import read_body, replaying
from h2s_checkout.api.request_screen import body_refusal
from h2s_checkout.api.schemas import CheckoutRequest
from h2s_checkout.domain.errors import CheckoutError
from h2s_checkout.flows.begin_checkout import CheckoutFlow
from h2s_checkout.observability.metrics import CHECKOUT_FAST_PATH

PATH = "/api/checkout"
_JSON = (b"application/json", b"application/json; charset=utf-8")
_KEY_MAX = 255  # the route's bound on Idempotency-Key
_decode = msgspec.json.Decoder(CheckoutRequest).decode
_encode = msgspec.json.Encoder().encode
_ANSWERED, _PASSED = CHECKOUT_FAST_PATH.labels("answered"), CHECKOUT_FAST_PATH.labels("passed")


class CheckoutFastPath:
    """ASGI in front of Litestar's own handler; ``app`` gives the flow (its lifespan's)."""

    def __init__(self, inner: ASGIApp, app: Litestar, *, max_body_bytes: int) -> None:
        self._inner = inner
        self._app = app
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":  # type: ignore[typeddict-item]
            await self._inner(scope, receive, send)
            return
        headers = _headers(scope)
        length = _content_length(headers)
        flow: CheckoutFlow | None = self._app.state.get("checkout_flow")
        if (
            flow is None
            or headers.get(b"content-type") not in _JSON
            or length is None
            or length > self._max_body
        ):
            await self._inner(scope, receive, send)
            return
        body, rest = await read_body(receive, self._max_body)
        answer = None
        if rest is None:  # the whole body, within its bound
            answer = await self._answer(flow, scope, headers, body)
        if answer is None:
            _PASSED.inc()
            await self._inner(scope, replaying(body, rest, receive), send)
            return
        _ANSWERED.inc()
        status, reply_headers, payload = answer
        scope["path_template"] = PATH  # the route's metrics label
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *((k.lower().encode(), v.encode()) for k, v in reply_headers.items()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _answer(
        self, flow: CheckoutFlow, scope: Scope, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        """The answer to send (status, headers, body), or None: the route's request."""
        key = headers.get(b"idempotency-key")
        if key is not None and not 1 <= len(key) <= _KEY_MAX:
            return None
        if body_refusal(body) is not None:
            return None  # the route's screen answers it (api/request_screen.py)
        authorization = headers.get(b"authorization")
        if authorization == b"":
            return None  # empty, or sent twice: the route's rules
        try:
            # As the route's guard, before the body is decoded: a storefront's key, or
            # nobody; a key found in this replica's cache costs no round trip.
            caller = (
                None
                if authorization is None
                else await checkout_caller(
                    self._app.state.key_ring, authorization.decode("latin-1")
                )
            )
        except CheckoutError as exc:
            return _error_answer(exc)
        try:
            data = _decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        addresses: ClientAddresses = self._app.state.client_addresses
        command = to_command(
            data, None if key is None else key.decode("latin-1"), addresses.of(scope), caller
        )
        try:
            result = await begin_counted(flow, command)
        except CheckoutError as exc:
            return _error_answer(exc)
        except Exception as exc:
            # As the route's handler for the unexpected: logged, a 500 with the trace id.
            return 500, {}, _encode(unexpected_error_body(exc))
        return result.status, answer_headers(result), result.json()


def _error_answer(exc: CheckoutError) -> tuple[int, dict[str, str], bytes]:
    """What the route's error handler answers for the same error."""
    status, error, error_headers = checkout_error_answer(exc)
    return status, error_headers or {}, _encode(error)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lowercase name; a name sent twice maps to b"" (ambiguous:
    such a request goes to the route, which has its own rules for it)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        name = name.lower()
        found[name] = b"" if name in found else value
    return found


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    value = headers.get(b"content-length")
    if not value or not value.isdigit():
        return None
    return int(value)
