"""Handlers of /v1/refunds, and of the payment intents (retrieve, capture, cancel) and
charges refunds are made on."""

from typing import Any

from .errors import resource_missing
from .objects import list_object, page_of
from .state import EmulatorState
from .validate import (
    check_only,
    parse_cancel,
    parse_capture,
    parse_expand,
    parse_refund,
    parse_refund_list,
)

LIST_URL = "/v1/refunds"
_ONLY_EXPAND = frozenset({"expand"})
_NOTHING = frozenset[str]()


def create_refund(state: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
    parse_expand(params, _NOTHING)
    return state.create_refund(parse_refund(params))


def retrieve_refund(state: EmulatorState, params: dict[str, Any], refund_id: str) -> dict[str, Any]:
    check_only(params, _ONLY_EXPAND)
    parse_expand(params, _NOTHING)
    refund = state.get_refund(refund_id)
    if refund is None:
        raise resource_missing("refund", refund_id, "id")
    return refund


def list_refunds(state: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
    query = parse_refund_list(params)
    parse_expand(params, _NOTHING)
    found = state.list_refunds(query.payment_intent, query.charge)
    page, has_more = page_of(
        found, query.limit, query.starting_after, query.ending_before, "refund"
    )
    return list_object(page, LIST_URL, has_more)


def retrieve_payment_intent(
    state: EmulatorState, params: dict[str, Any], payment_intent_id: str
) -> dict[str, Any]:
    check_only(params, frozenset({"expand", "client_secret"}))
    expand = parse_expand(params, frozenset({"latest_charge"}))
    intent = state.get_payment_intent(payment_intent_id)
    if intent is None:
        raise resource_missing("payment_intent", payment_intent_id, "intent")
    if "latest_charge" in expand and intent["latest_charge"]:
        intent["latest_charge"] = state.get_charge(intent["latest_charge"])
    return intent


def capture_payment_intent(
    state: EmulatorState, params: dict[str, Any], payment_intent_id: str
) -> dict[str, Any]:
    amount = parse_capture(params)
    parse_expand(params, _NOTHING)
    return state.capture_payment_intent(payment_intent_id, amount)


def cancel_payment_intent(
    state: EmulatorState, params: dict[str, Any], payment_intent_id: str
) -> dict[str, Any]:
    reason = parse_cancel(params)
    parse_expand(params, _NOTHING)
    return state.cancel_payment_intent(payment_intent_id, reason)


def retrieve_charge(state: EmulatorState, params: dict[str, Any], charge_id: str) -> dict[str, Any]:
    check_only(params, _ONLY_EXPAND)
    parse_expand(params, _NOTHING)
    charge = state.get_charge(charge_id)
    if charge is None:
        raise resource_missing("charge", charge_id, "charge")
    return charge
