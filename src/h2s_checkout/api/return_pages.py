"""GET /checkout/success and /checkout/cancel: the pages Stripe sends the customer back to.

Server-rendered, escaped everywhere, phone-width, no script. What a page shows depends on
what its URL holds, since anyone may open it. With the session id Stripe put in the
success URL (only the payer's browser has it): the order id, its services, its total and
its status. With an order id alone (guessable, and shared in emails and tickets): the
order id and its status word, nothing more. Every state of the checkout's machine has its
word (api/customer_words.py). Nothing about the customer, and no trace
internals, is ever shown. While a payment awaits confirmation (Stripe's webhook may come
after the redirect) the page refreshes itself until it comes.
"""

from __future__ import annotations

import re
from html import escape
from typing import Annotated
from urllib.parse import urlencode

import asyncpg
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import QueryParameter

from h2s_checkout.api.customer_words import Shown, on_cancel_page, on_success_page
from h2s_checkout.domain.errors import DatabaseUnavailable
from h2s_checkout.domain.keys import ORDER_ID_PATTERN
from h2s_checkout.store import order_status
from h2s_checkout.store.pool import connection

# Stripe's Checkout Session ids: cs_test_... or cs_live_...
SESSION_ID_PATTERN = r"cs_[A-Za-z0-9_]{1,250}"
# Every 2 s for the first minute, then every 30 s: a bank debit can take days to confirm.
FAST_POLLS, FAST_S, SLOW_S = 30, 2, 30
HEADERS = {
    # One customer's page, changing as the payment settles: never cached, by anyone.
    "Cache-Control": "no-store",
    # The session id in the URL must not travel on to another site.
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
}
STYLE = """
:root { font-family: system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
body { margin: 0 auto; max-width: 480px; padding: 16px; }
h1 { font-size: 1.3rem; margin: .4rem 0 .8rem; }
.card { background: #fff; border-radius: 8px; padding: 12px 14px; margin-bottom: 12px;
        box-shadow: 0 1px 2px rgba(0,0,0,.08); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 6px 12px; margin: 0; }
dt { color: #5b6475; } dd { margin: 0; overflow-wrap: anywhere; }
ul { margin: 0; padding-left: 1.1rem; }
.badge { display: inline-block; padding: 3px 10px; border-radius: 12px; font-weight: 600;
         background: #e4e7ec; margin-bottom: 8px; }
.status-paid { background: #d7f5dd; color: #12602a; }
.status-waiting { background: #fff3cd; color: #7a5200; }
.status-expired, .status-cancelled, .status-payment_failed, .status-not_completed
  { background: #fde2e1; color: #8a1c14; }
.status-refund_pending, .status-refunded, .status-refund_delayed
  { background: #e1ecfd; color: #1c3f8a; }
.note { color: #3b4252; }
"""


def _money(cents: int, currency: str) -> str:
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency.lower())
    amount = f"{cents / 100:,.2f}"
    return f"{symbol}{amount}" if symbol else f"{amount} {currency.upper()}"


def _page(title: str, body: str, status: int = 200, refresh: str | None = None) -> Response[str]:
    meta = f'<meta http-equiv=refresh content="{escape(refresh)}">' if refresh else ""
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"{meta}<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>{body}</body></html>"
    )
    return Response(html, status_code=status, media_type=MediaType.HTML, headers=HEADERS)


def _order_card(order_id: str, shown: Shown, details: str = "") -> str:
    return (
        "<div class=card>"
        f"<span class='badge status-{shown.key}' data-status='{shown.key}'>"
        f"{escape(shown.label)}</span>"
        f"<dl><dt>Order</dt><dd data-order>{escape(order_id)}</dd>{details}</dl></div>"
        f"<p class=note>{escape(shown.message)}</p>"
    )


def _details(order: asyncpg.Record) -> str:
    services = "".join(
        f"<li>{escape(str(item['name']))} &times; {int(item['quantity'])}</li>"
        for item in order["items"]
    )
    total = _money(order["total_cents"], order["currency"])
    return f"<dt>Services</dt><dd><ul>{services}</ul></dd><dt>Total</dt><dd>{escape(total)}</dd>"


def _reload(path: str, poll: int, **params: str | None) -> str:
    """The page's own URL, with the poll count one higher."""
    query = urlencode({k: v for k, v in params.items() if v} | {"poll": str(poll + 1)})
    return f"{path}?{query}"


def _valid(pattern: str, value: str | None) -> str | None:
    return value if value is not None and re.fullmatch(pattern, value) else None


def _not_found() -> Response[str]:
    return _page(
        "Order not found",
        "<div class=card><p>We cannot find a payment for this link. If you paid, your "
        "booking is safe: the shop has your confirmation.</p></div>",
        status=404,
    )


def _unavailable(reload_url: str) -> Response[str]:
    return _page(
        "One moment",
        "<div class=card><p>We cannot look up your order right now. This page will try "
        "again by itself.</p></div>",
        status=503,
        refresh=f"{SLOW_S}; url={reload_url}",
    )


Query = Annotated[str | None, QueryParameter(required=False)]


class CustomerReturnController(Controller):
    path = "/checkout"
    include_in_schema = False

    @get("/success")
    async def success(
        self,
        db_pool: NamedDependency[asyncpg.Pool],
        order_id: Query = None,
        session_id: Query = None,
        poll: Query = None,
    ) -> Response[str]:
        polls = int(poll) if poll is not None and re.fullmatch("[0-9]{1,5}", poll) else 0
        order = _valid(ORDER_ID_PATTERN, order_id)
        order = order.upper() if order else None
        session = _valid(SESSION_ID_PATTERN, session_id)
        reload_url = _reload("/checkout/success", polls, order_id=order, session_id=session)
        try:
            async with connection(db_pool) as conn:
                if session is not None:
                    row = await order_status.order_by_session(conn, session)
                    # An order id beside it must be the session's own.
                    if row is None or (order is not None and row["order_id"] != order):
                        return _not_found()
                    shown = on_success_page(row["state"])
                    body = _order_card(row["order_id"], shown, _details(row))
                elif order is not None:
                    row = await order_status.status_by_order(conn, order)
                    if row is None:
                        return _not_found()
                    shown = on_success_page(row["state"])
                    body = _order_card(row["order_id"], shown)
                else:
                    return _not_found()
        except DatabaseUnavailable:
            return _unavailable(reload_url)
        delay = FAST_S if polls < FAST_POLLS else SLOW_S
        refresh = f"{delay}; url={reload_url}" if shown.settling else None
        return _page(shown.title, body, refresh=refresh)

    @get("/cancel")
    async def cancel(
        self, db_pool: NamedDependency[asyncpg.Pool], order_id: Query = None
    ) -> Response[str]:
        order = _valid(ORDER_ID_PATTERN, order_id)
        if order is None:
            return _not_found()
        try:
            async with connection(db_pool) as conn:
                row = await order_status.status_by_order(conn, order.upper())
        except DatabaseUnavailable:
            return _unavailable(f"/checkout/cancel?{urlencode({'order_id': order})}")
        if row is None:
            return _not_found()
        shown = on_cancel_page(row["state"])
        return _page(shown.title, _order_card(row["order_id"], shown))
