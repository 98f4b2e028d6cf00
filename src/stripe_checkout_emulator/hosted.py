"""The hosted checkout page behind each session's `url`: line items, total, Pay and Cancel.

GET  /c/pay/{id}         the page (a plain HTML form, no script)
POST /c/pay/{id}/pay     pay: completes the session, 303 to success_url
                         (method=async: a delayed payment method; outcome=succeeded|failed;
                         delay=N seconds on the emulator's clock, empty: wait for an admin call)
                         Only as the page's form sends it: urlencoded, with the page's
                         pay_token (access.py), else 415 or 403 and nothing is paid.
POST /c/pay/{id}/cancel  303 to cancel_url; the session stays open, as on Stripe
"""

import html
from typing import Any
from urllib.parse import parse_qs, quote

from .access import pay_token, pay_token_matches
from .errors import StripeError
from .httpserver import Request, Response
from .objects import format_amount
from .state import EmulatorState

_FORM = "application/x-www-form-urlencoded"
PAGE = r"/c/pay/([^/]+)"
PAY = r"/c/pay/([^/]+)/pay"
CANCEL = r"/c/pay/([^/]+)/cancel"


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;color:#222}
table{width:100%;border-collapse:collapse;margin:1rem 0}
td,th{padding:.4rem;border-bottom:1px solid #ddd;text-align:left}
td.n,th.n{text-align:right}
.total td{font-weight:bold;border-bottom:none}
fieldset{border:1px solid #ddd;margin:1rem 0}
button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem}
.test{background:#fff3cd;padding:.3rem .6rem;display:inline-block;font-size:.85rem}
"""


def success_redirect(session: dict[str, Any]) -> str:
    """success_url with the {CHECKOUT_SESSION_ID} template variable filled in, as Stripe does."""
    return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session["id"])


class HostedPages:
    """Page handlers for EmulatorApp.add_route."""

    def __init__(self, state: EmulatorState, admin_token: str) -> None:
        self.state = state
        self._admin_token = admin_token

    def register(self, app: Any) -> None:
        app.add_route("GET", PAGE, self.show)
        app.add_route("POST", PAY, self.pay)
        app.add_route("POST", CANCEL, self.cancel)

    async def show(self, request: Request) -> Response:
        session = self.state.get_session(_session_id(request))
        if session is None:
            return _error(404, "Page not found", "There is no Checkout Session with this id.")
        if session["status"] == "expired":
            return _error(410, "Session expired", "This Checkout Session has expired.")
        if session["status"] == "complete":
            return _page(
                "Payment received",
                f"<p>This Checkout Session is complete (payment status "
                f"<b>{_e(session['payment_status'])}</b>).</p>"
                f'<p><a href="{_e(success_redirect(session))}">Return to the merchant</a></p>',
            )
        return _page(f"Pay {_total(session)}", self._checkout_body(session))

    async def pay(self, request: Request) -> Response:
        session_id = _session_id(request)
        if self.state.get_session(session_id) is None:
            return _error(404, "Page not found", "There is no Checkout Session with this id.")
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != _FORM:
            # Not the page's form: a JSON POST (an event delivery the service was made to
            # send here) must never pay.
            return _error(415, "Not a payment form", "Pay from the payment page's form.")
        form = _form(request)
        if not pay_token_matches(self._admin_token, session_id, form.get("pay_token")):
            return _error(
                403, "Not this page's form", "Open the payment page again and pay from there."
            )
        method = form.get("method", "card")
        if method not in ("card", "async"):
            return _error(400, "Bad request", f"Unknown payment method {method!r}.")
        outcome = form.get("outcome", "succeeded")
        if outcome not in ("succeeded", "failed"):
            return _error(400, "Bad request", "outcome is succeeded or failed.")
        try:
            delay = float(form["delay"]) if form.get("delay") else None
        except ValueError:
            return _error(400, "Bad request", "delay is a number of seconds.")
        session = self.state.get_session(session_id)
        if session is None:
            return _error(404, "Page not found", "There is no Checkout Session with this id.")
        if session["status"] != "open":
            return _not_payable(session)
        try:
            session = self.state.complete_session(
                session_id,
                form.get("email") or None,
                delayed=method == "async",
                succeeds=outcome == "succeeded",
                delay_s=delay,
            )
        except StripeError:
            # Expired or paid meanwhile (a concurrent request, the sweeper).
            return _not_payable(self.state.get_session(session_id) or session)
        return _redirect(success_redirect(session))

    async def cancel(self, request: Request) -> Response:
        session = self.state.get_session(_session_id(request))
        if session is None:
            return _error(404, "Page not found", "There is no Checkout Session with this id.")
        if not session["cancel_url"]:
            return _error(400, "No cancel URL", "This Checkout Session has no cancel_url.")
        return _redirect(session["cancel_url"])

    def _checkout_body(self, session: dict[str, Any]) -> str:
        items = self.state.line_items(session["id"]) or []
        rows = "".join(
            f"<tr><td>{_e(item['description'])}</td>"
            f'<td class="n">{item["quantity"]}</td>'
            f'<td class="n">{_e(format_amount(item["price"]["unit_amount"], cur))}</td>'
            f'<td class="n">{_e(format_amount(item["amount_total"], cur))}</td></tr>'
            for item in items
            for cur in [item["currency"]]
        )
        locked = session["customer_email"]
        email = (
            f'<input type="email" name="email" value="{_e(locked)}" readonly>'
            if locked
            else '<input type="email" name="email" placeholder="customer@example.com">'
        )
        pay_url = f"{_e(session['id'])}/pay"  # relative: works behind a path prefix too
        cancel = (
            f'<form method="post" action="{_e(session["id"])}/cancel">'
            '<button type="submit" name="cancel" value="1">Cancel</button></form>'
            if session["cancel_url"]
            else ""
        )
        return f"""<p class="test">Test mode: Stripe emulator</p>
<table>
<tr><th>Item</th><th class="n">Qty</th><th class="n">Unit</th><th class="n">Amount</th></tr>
{rows}
<tr class="total"><td colspan="3">Total</td>
<td class="n" id="total">{_e(_total(session))}</td></tr>
</table>
<form method="post" action="{pay_url}">
<input type="hidden" name="pay_token" value="{pay_token(self._admin_token, session["id"])}">
<p><label>Email {email}</label></p>
<fieldset><legend>Payment method</legend>
<label><input type="radio" name="method" value="card" checked> Card (paid at once)</label><br>
<label><input type="radio" name="method" value="async"> Bank debit (delayed)</label>:
<select name="outcome"><option value="succeeded">succeeds</option>
<option value="failed">fails</option></select>
after <input name="delay" size="4" placeholder="admin"> s
</fieldset>
<button type="submit" id="pay">Pay {_e(_total(session))}</button>
</form>
{cancel}"""


def _session_id(request: Request) -> str:
    # /c/pay/{id}[/action]
    return request.path.split("/")[3]


def _form(request: Request) -> dict[str, str]:
    values = parse_qs(request.query, keep_blank_values=True)
    if request.body:
        values.update(parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return {k: v[-1] for k, v in values.items()}


def _total(session: dict[str, Any]) -> str:
    return format_amount(session["amount_total"], session["currency"])


def _not_payable(session: dict[str, Any]) -> Response:
    if session["status"] == "expired":
        return _error(410, "Session expired", "This Checkout Session has expired.")
    return _error(409, "Already paid", "This Checkout Session is already complete.")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, status: int = 200) -> Response:
    text = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{_e(title)}</h1>\n{body}\n</body></html>\n"
    )
    return Response(
        status,
        text.encode(),
        [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
    )


def _error(status: int, title: str, message: str) -> Response:
    return _page(title, f"<p>{_e(message)}</p>", status)


def _redirect(location: str) -> Response:
    # Header bytes are latin-1: percent-encode anything beyond ASCII, keep URL syntax.
    location = quote(location, safe=":/?#[]@!$&'()*+,;=%~")
    body = f'<!doctype html><p>Redirecting to <a href="{_e(location)}">{_e(location)}</a></p>'
    return Response(
        303,
        body.encode(),
        [
            ("Location", location),
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
        ],
    )
