"""Request pipeline of the Stripe API emulator: routing, auth, faults, latency, idempotency."""

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import admin, checkout, ids, refunds
from .access import new_admin_token
from .errors import StripeError, api_error
from .faults import FaultRule
from .forms import decode_form
from .hosted import HostedPages
from .httpserver import DROP, Drop, Request, Response
from .state import EmulatorState, RecordedRequest, StoredResponse
from .webhooks import CURRENT_REQUEST

log = logging.getLogger(__name__)

# The SDK's pinned version (stripe 16.1.0); echoed when a request names none.
DEFAULT_STRIPE_VERSION = "2026-10-28.endive"
_TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")

ApiHandler = Callable[..., dict[str, Any]]
PageHandler = Callable[[Request], Awaitable[Response | Drop]]

_API_ROUTES: list[tuple[str, re.Pattern[str], ApiHandler]] = [
    ("POST", re.compile(r"/v1/checkout/sessions"), checkout.create_session),
    ("GET", re.compile(r"/v1/checkout/sessions"), checkout.list_sessions),
    ("GET", re.compile(r"/v1/checkout/sessions/([^/]+)"), checkout.retrieve_session),
    ("POST", re.compile(r"/v1/checkout/sessions/([^/]+)/expire"), checkout.expire_session),
    ("GET", re.compile(r"/v1/checkout/sessions/([^/]+)/line_items"), checkout.list_line_items),
    ("POST", re.compile(r"/v1/refunds"), refunds.create_refund),
    ("GET", re.compile(r"/v1/refunds"), refunds.list_refunds),
    ("GET", re.compile(r"/v1/refunds/([^/]+)"), refunds.retrieve_refund),
    ("GET", re.compile(r"/v1/payment_intents/([^/]+)"), refunds.retrieve_payment_intent),
    (
        "POST",
        re.compile(r"/v1/payment_intents/([^/]+)/capture"),
        refunds.capture_payment_intent,
    ),
    ("POST", re.compile(r"/v1/payment_intents/([^/]+)/cancel"), refunds.cancel_payment_intent),
    ("GET", re.compile(r"/v1/charges/([^/]+)"), refunds.retrieve_charge),
]


class EmulatorApp:
    """Answers Stripe API requests from EmulatorState; callable as an httpserver handler.

    `admin_token` opens the admin API (none given: a new one, in `self.admin_token`).
    """

    def __init__(self, state: EmulatorState, admin_token: str | None = None) -> None:
        self.state = state
        self.admin_token = admin_token or new_admin_token()
        self._pages: list[tuple[str, re.Pattern[str], PageHandler]] = []
        HostedPages(state, self.admin_token).register(self)

    def add_route(self, method: str, path_regex: str, handler: PageHandler) -> None:
        """Serve a non-API path (e.g. a hosted checkout page) with `handler`.

        Such routes bypass auth, faults and the request log, which model the
        Stripe API only.
        """
        self._pages.append((method.upper(), re.compile(path_regex), handler))

    async def __call__(self, request: Request) -> Response | Drop:
        if request.path.startswith("/_emulator/"):
            return await admin.handle(self.state, request, self.admin_token)
        for method, pattern, handler in self._pages:
            if method in (request.method, "*") and pattern.fullmatch(request.path):
                return await handler(request)
        return await self._api(request)

    async def _api(self, request: Request) -> Response | Drop:
        request_id = ids.request_id()
        parse_error: StripeError | None = None
        try:
            params = _params(request)
        except StripeError as exc:
            params, parse_error = {}, exc
        record = RecordedRequest(
            request_id=request_id,
            method=request.method,
            path=request.path,
            params=params,
            idempotency_key=request.headers.get("idempotency-key"),
            api_key=_api_key(request.headers),
            stripe_version=request.headers.get("stripe-version"),
            received_at=time.time(),
        )
        self.state.record(record)
        # The global latency stands for the network round trip: every API
        # request pays it, before anything else happens.
        if self.state.latency_ms > 0:
            await asyncio.sleep(self.state.latency_ms / 1000)

        rule = self.state.faults.pick(request.method, request.path)
        record.fault = rule.kind if rule else None
        slow = rule.delay if rule is not None and rule.kind == "latency" else 0.0
        if rule is None or rule.kind == "latency":
            response = await self._execute(request, params, parse_error, request_id, record, slow)
            record.status = response.status
            return response

        if rule.processed:
            # The API does its work and stores the idempotent result; only the
            # answer is lost or replaced on the way back.
            await self._execute(request, params, parse_error, request_id, record, 0.0)
        await asyncio.sleep(rule.delay)
        if rule.kind == "status":
            response = _fault_response(rule, request, request_id)
            record.status = response.status
            return response
        return DROP

    async def _execute(
        self,
        request: Request,
        params: dict[str, Any],
        parse_error: StripeError | None,
        request_id: str,
        record: RecordedRequest,
        slow: float,
    ) -> Response:
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        headers = _headers(request, request_id, key)
        try:
            api_key = _authenticate(request.headers)
            handler, args = _route(request)
            if key:
                stored = self.state.begin_idempotent(
                    api_key, key, request.method, request.path, params
                )
                if stored is not None:
                    record.replayed = True
                    headers += [
                        ("Idempotent-Replayed", "true"),
                        ("Original-Request", stored.request_id),
                    ]
                    return Response(stored.status, stored.body, headers)
        except StripeError as exc:
            return _error_response(exc, headers)

        try:
            # Slowness is processing time: a retry with the same key meanwhile
            # meets the in-flight key (409), as on Stripe.
            if slow:
                await asyncio.sleep(slow)
            token = CURRENT_REQUEST.set({"id": request_id, "idempotency_key": key})
            try:
                result = _run(handler, self.state, params, args, parse_error)
            finally:
                CURRENT_REQUEST.reset(token)
            status, body, store = 200, result, True
        except StripeError as exc:
            status, body, store = exc.status, exc.body(), exc.stored
            headers += list(exc.headers.items())
        except asyncio.CancelledError:
            if key:
                self.state.finish_idempotent(api_key, key, None)
            raise
        except Exception:
            log.exception("emulator handler failed for %s %s", request.method, request.path)
            error = api_error()
            status, body, store = error.status, error.body(), False
        payload = json.dumps(body).encode()
        if key:
            stored_response = StoredResponse(status, payload, request_id) if store else None
            self.state.finish_idempotent(api_key, key, stored_response)
        return Response(status, payload, headers)


def _run(
    handler: ApiHandler,
    state: EmulatorState,
    params: dict[str, Any],
    args: tuple[str, ...],
    parse_error: StripeError | None,
) -> dict[str, Any]:
    if parse_error is not None:
        raise parse_error
    return handler(state, params, *args)


def _params(request: Request) -> dict[str, Any]:
    params = decode_form(request.query) if request.query else {}
    if request.body:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise StripeError(
                400,
                f"Invalid request: unsupported Content-Type {content_type or 'none'}. "
                "If error persists and you need assistance, please contact support@stripe.com.",
            )
        params.update(decode_form(request.body.decode("utf-8", "replace")))
    return params


def _route(request: Request) -> tuple[ApiHandler, tuple[str, ...]]:
    for method, pattern, handler in _API_ROUTES:
        match = pattern.fullmatch(request.path)
        if match and method == request.method:
            return handler, match.groups()
    raise StripeError(
        404,
        f"Unrecognized request URL ({request.method}: {request.path}). Please see "
        "https://stripe.com/docs or we can help at https://support.stripe.com/.",
    )


def _api_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    if scheme.lower() == "basic":
        # curl -u sk_test_...: sends the key as the Basic user name.
        try:
            return base64.b64decode(credentials).decode().partition(":")[0] or None
        except ValueError:
            return None
    return None


def _authenticate(headers: dict[str, str]) -> str:
    api_key = _api_key(headers)
    if api_key is None:
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
            "or we can help at https://support.stripe.com/.",
            headers={"WWW-Authenticate": 'Bearer realm="Stripe"'},
        )
    if not api_key.startswith(_TEST_KEY_PREFIXES) or len(api_key) <= len("sk_test_"):
        masked = api_key[:8] + "*" * max(len(api_key) - 12, 0) + api_key[-4:]
        raise StripeError(
            401,
            f"Invalid API Key provided: {masked}",
            headers={"WWW-Authenticate": 'Bearer realm="Stripe"'},
        )
    return api_key


def _headers(request: Request, request_id: str, key: str | None) -> list[tuple[str, str]]:
    headers = [
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-cache, no-store"),
        ("Request-Id", request_id),
        ("Stripe-Version", request.headers.get("stripe-version") or DEFAULT_STRIPE_VERSION),
    ]
    if key:
        headers.append(("Idempotency-Key", key))
    return headers


def _error_response(error: StripeError, headers: list[tuple[str, str]]) -> Response:
    return Response(
        error.status, json.dumps(error.body()).encode(), headers + list(error.headers.items())
    )


def _fault_response(rule: FaultRule, request: Request, request_id: str) -> Response:
    if rule.status == 429:
        error = StripeError(
            429,
            "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            code="rate_limit",
            headers={"Retry-After": str(rule.retry_after if rule.retry_after is not None else 1)},
        )
    elif rule.status >= 500:
        error = api_error()
        error.status = rule.status
    else:
        error = StripeError(rule.status, f"Injected fault {rule.id} (HTTP {rule.status}).")
    for name, value in (rule.error or {}).items():
        if name in ("type", "code", "message", "param"):
            setattr(error, name, value)
    if rule.status != 429 and rule.retry_after is not None:
        error.headers["Retry-After"] = str(rule.retry_after)
    error.headers.update(rule.headers)
    key = request.headers.get("idempotency-key") if request.method == "POST" else None
    return _error_response(error, _headers(request, request_id, key))
