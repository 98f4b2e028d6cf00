"""Where Stripe sends the customer after paying or cancelling: URL templates, filled in."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

# Ours: filled in when the session is created.
ORDER_ID = "{ORDER_ID}"
# Stripe's: left as it is, for Stripe to fill in when it redirects after payment. Stripe
# fills it in success_url only; in a cancel_url it would reach the customer unreplaced.
CHECKOUT_SESSION_ID = "{CHECKOUT_SESSION_ID}"
_BRACES = re.compile(r"\{[^{}]*\}|[{}]")


def default_success_url(base_url: str) -> str:
    """This service's own success page, keyed on the session id that only the payer has."""
    return f"{base_url}/checkout/success?order_id={ORDER_ID}&session_id={CHECKOUT_SESSION_ID}"


def default_cancel_url(base_url: str) -> str:
    return f"{base_url}/checkout/cancel?order_id={ORDER_ID}"


def success_url(order_id: str, base_url: str, template: str | None = None) -> str:
    """The success_url for an order: ``template`` (H2S_SUCCESS_URL), else this service's."""
    return _fill(template or default_success_url(base_url), order_id)


def cancel_url(order_id: str, base_url: str, template: str | None = None) -> str:
    """The cancel_url for an order: ``template`` (H2S_CANCEL_URL), else this service's."""
    return _fill(template or default_cancel_url(base_url), order_id)


def _fill(template: str, order_id: str) -> str:
    return template.replace(ORDER_ID, quote(order_id, safe=""))


def template_problem(template: str, *, success: bool) -> str | None:
    """What makes ``template`` unusable as a success (or cancel) URL template, or None."""
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http:// or https:// URL"
    allowed = {ORDER_ID, CHECKOUT_SESSION_ID} if success else {ORDER_ID}
    for found in _BRACES.findall(template):
        if found == CHECKOUT_SESSION_ID and not success:
            return f"cannot use {CHECKOUT_SESSION_ID}: Stripe fills it in the success URL only"
        if found not in allowed:
            names = " and ".join(sorted(allowed))
            return f"has {found!r}, which is not a template variable (use {names})"
    return None
