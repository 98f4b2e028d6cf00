"""Handlers of the /v1/checkout/sessions endpoints: params in, Stripe JSON object out."""

from typing import Any

from .errors import resource_missing
from .objects import list_object, page_of
from .state import EmulatorState
from .validate import ListQuery, check_only, parse_create, parse_expand, parse_list

LIST_URL = "/v1/checkout/sessions"
_EXPAND = frozenset({"line_items"})
_LIST_EXPAND = frozenset({"data.line_items"})
_ONLY_EXPAND = frozenset({"expand"})


def create_session(state: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
    expand = parse_expand(params, _EXPAND)
    spec = parse_create(params, state.now())
    session = state.create_session(spec)
    return _expanded(state, session, expand)


def retrieve_session(
    state: EmulatorState, params: dict[str, Any], session_id: str
) -> dict[str, Any]:
    check_only(params, _ONLY_EXPAND)
    expand = parse_expand(params, _EXPAND)
    session = state.get_session(session_id)
    if session is None:
        raise resource_missing("checkout.session", session_id, "session")
    return _expanded(state, session, expand)


def expire_session(state: EmulatorState, params: dict[str, Any], session_id: str) -> dict[str, Any]:
    check_only(params, _ONLY_EXPAND)
    expand = parse_expand(params, _EXPAND)
    return _expanded(state, state.expire_session(session_id), expand)


def list_sessions(state: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
    query = parse_list(params)
    expand = {p.removeprefix("data.") for p in parse_expand(params, _LIST_EXPAND)}
    found = state.scan_sessions(lambda s: _matches(s, query))
    page, has_more = _page(found, query)
    return list_object([_expanded(state, s, expand) for s in page], LIST_URL, has_more)


def list_line_items(
    state: EmulatorState, params: dict[str, Any], session_id: str
) -> dict[str, Any]:
    check_only(params, frozenset({"expand", "limit", "starting_after", "ending_before"}))
    items = state.line_items(session_id)
    if items is None:
        raise resource_missing("checkout.session", session_id, "session")
    return list_object(items, f"{LIST_URL}/{session_id}/line_items")


def _expanded(state: EmulatorState, session: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    if "line_items" in expand:
        session["line_items"] = list_object(
            state.line_items(session["id"]) or [], f"{LIST_URL}/{session['id']}/line_items"
        )
    return session


def _matches(session: dict[str, Any], query: ListQuery) -> bool:
    return all(
        wanted is None or session[field] == wanted
        for field, wanted in (
            ("client_reference_id", query.client_reference_id),
            ("status", query.status),
            ("customer", query.customer),
            ("payment_intent", query.payment_intent),
        )
    )


def _page(found: list[dict[str, Any]], query: ListQuery) -> tuple[list[dict[str, Any]], bool]:
    return page_of(
        found, query.limit, query.starting_after, query.ending_before, "checkout.session"
    )
