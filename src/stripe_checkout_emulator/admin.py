"""HTTP admin API under /_emulator/ so tests in other processes can drive the emulator.

Every route but `/_emulator/health` needs the emulator's admin token as a bearer token
(access.py says why); no answer carries the webhook signing secret, which would let the
reader forge events the service accepts.
"""

import json
import re
from typing import Any
from urllib.parse import parse_qs

from .access import is_admin
from .errors import StripeError
from .faults import FaultRule
from .httpserver import Request, Response
from .ledger import RefundRule
from .state import EmulatorState
from .webhooks import WebhookRule

_JSON = [("Content-Type", "application/json")]


_HEALTH = "/_emulator/health"


async def handle(state: EmulatorState, request: Request, admin_token: str) -> Response:
    """Dispatch one admin request; errors come back as `{"error": "..."}` with 400/401/404."""
    if request.path.rstrip("/") != _HEALTH and not is_admin(request.headers, admin_token):
        return Response(
            401,
            json.dumps(
                {
                    "error": "the emulator's admin API needs its admin token: "
                    "Authorization: Bearer <token>"
                }
            ).encode(),
            [*_JSON, ("WWW-Authenticate", 'Bearer realm="stripe-emulator-admin"')],
        )
    try:
        return _ok(_dispatch(state, request))
    except _NotFound:
        return _reply(404, {"error": f"no admin route {request.method} {request.path}"})
    except (ValueError, TypeError) as exc:
        return _reply(400, {"error": str(exc)})
    except StripeError as exc:
        return _reply(exc.status, exc.body())


class _NotFound(Exception):
    pass


def _dispatch(state: EmulatorState, request: Request) -> Any:
    method, path = request.method, request.path.rstrip("/")
    if path == _HEALTH:
        return {"ok": True}
    if path == "/_emulator/reset" and method == "POST":
        state.reset()
        return {"ok": True}
    if path == "/_emulator/config":
        if method == "POST":
            _configure(state, _json(request))
        return {
            "latency_ms": state.latency_ms,
            "now": state.now(),
            "webhook_url": state.webhooks.url,
            # Whether one is set, never the secret: with it anyone could sign events.
            "webhook_secret_set": state.webhooks.secret is not None,
            "webhook_retry": state.webhooks.retry.to_dict(),
        }
    if path.startswith("/_emulator/events") or path.startswith("/_emulator/webhooks"):
        return _webhooks(state, method, path, request)
    if path.startswith("/_emulator/refunds"):
        return _refunds(state, method, path, request)
    if path == "/_emulator/deliveries" and method == "GET":
        event_id = parse_qs(request.query).get("event", [None])[0]
        return {
            "deliveries": [d.to_dict() for d in state.deliveries if event_id in (None, d.event_id)]
        }
    if path == "/_emulator/faults":
        if method == "GET":
            return {"faults": [r.to_dict() for r in state.faults.rules]}
        if method == "POST":
            rules = [state.faults.add(FaultRule.from_dict(d)) for d in _fault_dicts(_json(request))]
            return {"faults": [r.to_dict() for r in rules]}
        if method == "DELETE":
            state.faults.clear()
            return {"ok": True}
    if (m := re.fullmatch(r"/_emulator/faults/([^/]+)", path)) and method == "DELETE":
        if not state.faults.remove(m.group(1)):
            raise _NotFound
        return {"ok": True}
    if path == "/_emulator/requests":
        if method == "GET":
            match = parse_qs(request.query).get("match", ["*"])[0]
            return {"requests": [r.to_dict() for r in state.find_requests(match)]}
        if method == "DELETE":
            state.clear_requests()
            return {"ok": True}
    if (m := re.fullmatch(r"/_emulator/payment_intents/([^/]+)/lapse", path)) and method == "POST":
        return state.lapse_hold(m.group(1))
    if path == "/_emulator/sessions" and method == "GET":
        return {"sessions": state.sessions}
    if m := re.fullmatch(r"/_emulator/sessions/([^/]+)(/complete|/expire|/events)?", path):
        session_id, action = m.groups()
        if method == "GET" and action is None:
            session = state.get_session(session_id)
            if session is None:
                raise _NotFound
            return session
        if method == "POST" and action == "/complete":
            body = _object(request)
            return state.complete_session(
                session_id,
                body.get("email"),
                delayed=bool(body.get("delayed", False)),
                succeeds=body.get("outcome", "succeeded") == "succeeded",
                delay_s=None if body.get("delay_s") is None else float(body["delay_s"]),
            )
        if method == "POST" and action == "/expire":
            return state.expire_session(session_id)
        if method == "POST" and action == "/events":
            body = _object(request)
            if not isinstance(body.get("type"), str):
                raise ValueError('"type" (an event type) is required')
            event = state.send_event(
                session_id, body["type"], body.get("email"), bool(body.get("force", False))
            )
            return {"event": event}
    raise _NotFound


def _webhooks(state: EmulatorState, method: str, path: str, request: Request) -> Any:
    hooks = state.webhooks
    if path == "/_emulator/events" and method == "GET":
        query = parse_qs(request.query)
        event_type = query.get("type", [None])[0]
        session_id = query.get("session", [None])[0]
        return {
            "events": [
                e
                for e in hooks.events
                if event_type in (None, e["type"])
                and session_id in (None, e["data"]["object"].get("id"))
            ]
        }
    if (m := re.fullmatch(r"/_emulator/events/([^/]+)", path)) and method == "GET":
        event = hooks.get_event(m.group(1))
        if event is None:
            raise _NotFound
        return event
    if (m := re.fullmatch(r"/_emulator/events/([^/]+)/redeliver", path)) and method == "POST":
        try:
            return {"event": hooks.redeliver(m.group(1))}
        except KeyError:
            raise _NotFound from None
    if path == "/_emulator/webhooks/faults":
        if method == "GET":
            return {"faults": [r.to_dict() for r in hooks.rules]}
        if method == "POST":
            rules = [hooks.add_rule(WebhookRule.from_dict(d)) for d in _fault_dicts(_json(request))]
            return {"faults": [r.to_dict() for r in rules]}
        if method == "DELETE":
            hooks.clear_rules()
            return {"ok": True}
    if (m := re.fullmatch(r"/_emulator/webhooks/faults/([^/]+)", path)) and method == "DELETE":
        if not hooks.remove_rule(m.group(1)):
            raise _NotFound
        return {"ok": True}
    if path == "/_emulator/webhooks/hold" and method == "POST":
        hooks.hold()
        return {"holding": True}
    if path == "/_emulator/webhooks/release" and method == "POST":
        return {"released": hooks.release(_object(request).get("order", "fifo"))}
    if path == "/_emulator/webhooks" and method == "GET":
        return {"holding": hooks.holding, "idle": hooks.idle}
    raise _NotFound


def _refunds(state: EmulatorState, method: str, path: str, request: Request) -> Any:
    if path == "/_emulator/refunds" and method == "GET":
        return {"refunds": state.list_refunds()}
    if path == "/_emulator/refunds/faults":
        if method == "GET":
            return {"faults": [r.to_dict() for r in state.refund_rules]}
        if method == "POST":
            rules = [
                state.add_refund_rule(RefundRule.from_dict(d)) for d in _fault_dicts(_json(request))
            ]
            return {"faults": [r.to_dict() for r in rules]}
        if method == "DELETE":
            state.clear_refund_rules()
            return {"ok": True}
    if (m := re.fullmatch(r"/_emulator/refunds/faults/([^/]+)", path)) and method == "DELETE":
        if not state.remove_refund_rule(m.group(1)):
            raise _NotFound
        return {"ok": True}
    if (m := re.fullmatch(r"/_emulator/refunds/([^/]+)/settle", path)) and method == "POST":
        body = _object(request)
        outcome = body.get("outcome", "succeeded")
        if outcome not in RefundRule.OUTCOMES:
            raise ValueError(f'"outcome" is one of {list(RefundRule.OUTCOMES)}')
        return state.settle_refund(m.group(1), outcome == "succeeded", body.get("failure_reason"))
    raise _NotFound


_CONFIG_FIELDS = {
    "latency_ms",
    "seed",
    "advance_clock",
    "webhook_url",
    "webhook_secret",
    "webhook_retry",
}


def _configure(state: EmulatorState, body: dict[str, Any]) -> None:
    if not isinstance(body, dict):
        raise ValueError("the config is a JSON object")
    unknown = set(body) - _CONFIG_FIELDS
    if unknown:
        raise ValueError(f"unknown config fields: {sorted(unknown)}")
    if "webhook_retry" in body:
        if not isinstance(body["webhook_retry"], dict):
            raise ValueError("webhook_retry is an object of RetryPolicy fields")
        state.webhooks.retry = state.webhooks.retry.updated(body["webhook_retry"])
    if "webhook_url" in body:
        state.webhooks.url = body["webhook_url"] or None
    if "webhook_secret" in body:
        state.webhooks.secret = body["webhook_secret"] or None
    if "latency_ms" in body:
        state.latency_ms = float(body["latency_ms"])
    if "seed" in body:
        state.faults.seed(body["seed"])
    if "advance_clock" in body:
        state.advance_clock(float(body["advance_clock"]))


def _fault_dicts(body: Any) -> list[dict[str, Any]]:
    # Accept one rule, a list of rules, or {"faults": [...]}.
    if isinstance(body, dict) and "faults" in body:
        body = body["faults"]
    rules = body if isinstance(body, list) else [body]
    if not all(isinstance(r, dict) for r in rules):
        raise ValueError("a fault is a JSON object")
    return rules


def _object(request: Request) -> dict[str, Any]:
    body = _json(request)
    if not isinstance(body, dict):
        raise ValueError("the body is a JSON object")
    return body


def _json(request: Request) -> Any:
    if not request.body:
        return {}
    try:
        return json.loads(request.body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON body: {exc}") from exc


def _ok(body: Any) -> Response:
    return _reply(200, body)


def _reply(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body).encode(), list(_JSON))
