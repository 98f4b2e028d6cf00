"""HTTP admin API under /_emulator/ so tests in other processes can drive the emulator."""

import json
import re
from typing import Any
from urllib.parse import parse_qs

from .errors import StripeError
from .faults import FaultRule
from .httpserver import Request, Response
from .state import EmulatorState

_JSON = [("Content-Type", "application/json")]


async def handle(state: EmulatorState, request: Request) -> Response:
    """Dispatch one admin request; errors come back as `{"error": "..."}` with 400/404."""
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
    if path == "/_emulator/health":
        return {"ok": True}
    if path == "/_emulator/reset" and method == "POST":
        state.reset()
        return {"ok": True}
    if path == "/_emulator/config":
        if method == "POST":
            _configure(state, _json(request))
        return {"latency_ms": state.latency_ms, "now": state.now()}
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
    if path == "/_emulator/sessions" and method == "GET":
        return {"sessions": state.sessions}
    if m := re.fullmatch(r"/_emulator/sessions/([^/]+)(/complete|/expire)?", path):
        session_id, action = m.groups()
        if method == "GET" and action is None:
            session = state.get_session(session_id)
            if session is None:
                raise _NotFound
            return session
        if method == "POST" and action == "/complete":
            body = _json(request)
            return state.complete_session(
                session_id, body.get("email") if isinstance(body, dict) else None
            )
        if method == "POST" and action == "/expire":
            return state.expire_session(session_id)
    raise _NotFound


def _configure(state: EmulatorState, body: dict[str, Any]) -> None:
    unknown = set(body) - {"latency_ms", "seed", "advance_clock"}
    if unknown:
        raise ValueError(f"unknown config fields: {sorted(unknown)}")
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
