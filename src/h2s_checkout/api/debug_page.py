"""GET /debug/checkouts/{ref}: one page that shows what happened to a checkout.

Server-rendered HTML (no build step), escaped everywhere, readable on a phone. It needs a
key with the read scope, as a bearer header or through the sign-in form, which opens a
server-side session (api/sessions.py): the cookie holds a random session id, never a key.
"""

from __future__ import annotations

import uuid
from html import escape
from typing import Annotated, Any
from urllib.parse import quote, urlparse

import asyncpg
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body, FromPath, FromQuery

from h2s_checkout.api.auth import principal_of, require_scope
from h2s_checkout.api.client_address import client_address
from h2s_checkout.api.sessions import end_session, start_session
from h2s_checkout.domain.access import Scope
from h2s_checkout.domain.cart import normalize_email
from h2s_checkout.domain.errors import (
    CrossSiteRequest,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
)
from h2s_checkout.flows import inspect_checkout
from h2s_checkout.flows.sign_in import SignInGate
from h2s_checkout.store import checkouts
from h2s_checkout.store.pool import connection

MARKED = {
    "checkout.replayed": ("replay", "Replayed the stored answer"),
    "checkout.resumed": ("resumed", "Resumed after a dead attempt"),
    "checkout.conflict": ("conflict", "Refused: still in flight (409)"),
    "payment.needs_refund": ("failure", "Paid after cleanup: refund needed"),
    "capture.send_failed": ("failure", "Capture not confirmed yet: the reconciler retries"),
    "stripe.release_failed": ("failure", "Hold not released: it lapses by itself"),
}
STYLE = """
:root { font-family: system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
body { margin: 0 auto; max-width: 760px; padding: 12px; }
h1 { font-size: 1.2rem; margin: .4rem 0; word-break: break-all; }
form.search { display: flex; gap: 6px; margin: 8px 0 14px; }
form.search input { flex: 1; min-width: 0; padding: 8px; font-size: 1rem; }
button { padding: 8px 12px; font-size: 1rem; }
.card { background: #fff; border-radius: 8px; padding: 10px 12px; margin-bottom: 12px;
        box-shadow: 0 1px 2px rgba(0,0,0,.08); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 10px; margin: 0; }
dt { color: #5b6475; } dd { margin: 0; word-break: break-all; }
.badge { display: inline-block; padding: 2px 8px; border-radius: 10px; font-size: .8rem;
         background: #e4e7ec; }
.state-paid, .state-session_created, .state-refunded, .state-authorized
  { background: #d7f5dd; color: #12602a; }
.state-cleaned, .state-failed, .state-expired, .state-payment_failed, .state-refund_failed,
.state-authorization_expired { background: #fde2e1; color: #8a1c14; }
.state-cancelled, .state-refund_pending, .state-capture_pending, .state-partially_refunded
  { background: #fff1cc; color: #6b4e00; }
ol.timeline { list-style: none; margin: 0; padding: 0 0 0 14px; border-left: 3px solid #c9ced8; }
ol.timeline li { position: relative; padding: 6px 0 10px 12px; }
ol.timeline li::before { content: ""; position: absolute; left: -22px; top: 11px; width: 11px;
    height: 11px; border-radius: 50%; background: #9aa3b5; }
ol.timeline li.transition::before { background: #2457c5; }
ol.timeline li.failure::before, ol.timeline li.step-failure::before { background: #c5221f; }
ol.timeline li.step-failure .what { color: #a1170f; }
ol.timeline li.replay::before, ol.timeline li.resumed::before,
ol.timeline li.conflict::before { background: #b26a00; }
.when { color: #5b6475; font-size: .82rem; font-variant-numeric: tabular-nums; }
.what { font-weight: 600; }
.detail { font-size: .82rem; color: #3b4252; word-break: break-all; }
.failure-box { border-left: 4px solid #c5221f; background: #fff5f5; }
.mark { font-size: .75rem; text-transform: uppercase; letter-spacing: .03em; color: #b26a00; }
.actor { font-size: .78rem; color: #2457c5; }
.whoami { display: flex; justify-content: flex-end; align-items: center; gap: 8px;
          font-size: .85rem; color: #5b6475; }
.whoami button { padding: 3px 8px; font-size: .85rem; }
a { color: #2457c5; }
"""


def _page(
    title: str,
    body: str,
    status: int = 200,
    *,
    actor: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    whoami = (
        f"<div class=whoami>Signed in as {escape(actor)}"
        '<form method=post action="/debug/logout"><button>Sign out</button></form></div>'
        if actor
        else ""
    )
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>{whoami}"
        f'<form class=search method=get action="/debug"><input name=q '
        'placeholder="Trace id, order id or email" aria-label="Search">'
        "<button>Find</button></form>"
        f"{body}</body></html>"
    )
    return Response(html, status_code=status, media_type=MediaType.HTML, headers=headers)


def _login(message: str = "") -> Response[str]:
    note = f"<p>{escape(message)}</p>" if message else ""
    return _page(
        "Sign in",
        f"<div class=card><h1>API key needed</h1>{note}"
        '<form method=post action="/debug/login">'
        '<input type=password name=token aria-label="API key" autocomplete=off> '
        "<button>Sign in</button></form></div>",
        status=401,
    )


def _unauthorized_page(_: Request[Any, Any, Any], exc: Unauthorized) -> Response[str]:
    return _login()


def _forbidden_page(_: Request[Any, Any, Any], exc: Forbidden) -> Response[str]:
    return _page(
        "Not allowed",
        f"<div class=card><h1>Not allowed</h1><p data-code='{escape(exc.code)}'>"
        f"{escape(exc.message)}</p></div>",
        status=403,
    )


# What a browser says of where a request comes from (Fetch Metadata): only our own pages,
# or a person typing the address, may sign in or out.
_OWN_SITE = frozenset({"same-origin", "none"})


def _origin_of(url: str) -> str:
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def refuse_cross_site(request: Request[Any, Any, Any]) -> None:
    """Sign-in CSRF: a page elsewhere must not sign a visitor in with its own key (their
    next visit would act as the attacker) or out. Every current browser sends
    Sec-Fetch-Site or Origin with a form post; either one naming another site is refused
    with 403 cross_site_request. A request with neither is no browser's cross-site post
    (curl, a script with the key), and is let through."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site.lower() not in _OWN_SITE:
            raise CrossSiteRequest("sign-in and sign-out are accepted from this site's own form")
        return
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = {
        _origin_of(request.app.state.settings.public_base_url),
        _origin_of(str(request.base_url)),
    }
    if origin.lower() not in own:
        raise CrossSiteRequest("sign-in and sign-out are accepted from this site's own form")


def _rate_limited_page(_: Request[Any, Any, Any], exc: RateLimited) -> Response[str]:
    return _page(
        "Too many attempts",
        f"<div class=card><h1>Too many attempts</h1><p>{escape(exc.message)}</p></div>",
        status=429,
        headers={"Retry-After": str(exc.retry_after_s)},
    )


def _after_sign_in(referer: str | None) -> str:
    """Back to the debug page the form was on; never to another site."""
    url = urlparse(referer or "")
    if url.path.startswith("/debug") and not url.path.startswith("/debug/log"):
        return url.path + (f"?{url.query}" if url.query else "")
    return "/debug"


def _detail_text(detail: dict[str, Any]) -> str:
    # The actor is shown beside the time ("by …").
    parts = [f"{k}={v}" for k, v in detail.items() if v not in (None, "", {}, []) and k != "actor"]
    return escape(" · ".join(parts))


def _step_html(step: dict[str, Any]) -> str:
    since = step["since_previous_ms"]
    took = step["duration_ms"]
    timing = escape(step["at"][11:23]) + " UTC"
    if since is not None:
        timing += f" · +{since:.1f} ms"
    if took is not None:
        timing += f" · took {took:.1f} ms"
    actor = (step["detail"] or {}).get("actor")
    if actor:
        timing += f" · <span class=actor>by {escape(str(actor))}</span>"
    event = step["event"]
    if step["kind"] == "transition":
        css, mark = "transition", ""
        what = f"{escape(step['from_state'])} → {escape(step['to_state'])}"
        what += f" <span class=detail>({escape(event)})</span>"
    else:
        css, label = MARKED.get(event, ("", ""))
        if not css and (event.endswith(".failed") or "failed" in event or "pending" in event):
            css = "step-failure"
        mark = f"<div class=mark>{escape(label)}</div>" if label else ""
        what = escape(event)
    detail = _detail_text(step["detail"])
    return (
        f'<li class="{css}">{mark}<div class=when>{timing}</div>'
        f"<div class=what>{what}</div>"
        + (f"<div class=detail>{detail}</div>" if detail else "")
        + _trace_html(step)
        + "</li>"
    )


def _trace_html(step: dict[str, Any]) -> str:
    """The OpenTelemetry trace of the request that made the step: a link to the trace
    viewer when H2S_TRACE_URL_TEMPLATE is set, its id otherwise."""
    trace_id = step.get("otel_trace_id")
    if not trace_id:
        return ""
    url = step.get("trace_url")
    shown = (
        f'<a class=trace href="{escape(url)}">trace {escape(trace_id)}</a>'
        if url
        else f"trace {escape(trace_id)}"
    )
    return f"<div class='detail trace'>{shown}</div>"


def _failure_html(failure: dict[str, Any]) -> str:
    return (
        "<div class='card failure-box'>"
        f"<div class=what>Failed in {escape(str(failure['phase']))}: "
        f"{escape(str(failure['error_code']))}</div>"
        f"<dl><dt>error</dt><dd>{escape(str(failure['error_class']))}</dd>"
        f"<dt>provider code</dt><dd>{escape(str(failure.get('provider_code')))}</dd>"
        f"<dt>HTTP status</dt><dd>{escape(str(failure.get('http_status')))}</dd>"
        f"<dt>provider request</dt><dd>{escape(str(failure.get('provider_request_id')))}</dd>"
        f"<dt>message</dt><dd>{escape(str(failure['message']))}</dd>"
        f"<dt>at</dt><dd>{escape(str(failure['at']))}</dd></dl></div>"
    )


def _attempt_text(attempt: dict[str, Any]) -> str:
    answer = attempt.get("status_code") or attempt.get("error") or "no answer"
    took = attempt.get("duration_ms")
    return f"#{attempt['attempt']} {answer}" + (f" ({took:.0f} ms)" if took is not None else "")


def _events_html(events: list[dict[str, Any]]) -> str:
    """Each outbound event about the order, with where it went and every attempt."""
    if not events:
        return ""
    items = []
    for event in events:
        sent = (
            "".join(
                f"<div class=detail>→ {escape(d['url'])} <span class=badge>{escape(d['status'])}"
                f"</span> {escape(' · '.join(_attempt_text(a) for a in d['attempts']))}</div>"
                for d in event["deliveries"]
            )
            or "<div class=detail>no subscriber</div>"
        )
        items.append(
            f"<li><div class=when>{escape(event['created_at'][11:23])} UTC · "
            f"sequence {event['sequence']} · {escape(event['event_id'])}</div>"
            f"<div class=what>{escape(event['type'])}</div>{sent}</li>"
        )
    return f"<div class=card><h1>Events</h1><ol class=timeline>{''.join(items)}</ol></div>"


def render_checkout(timeline: dict[str, Any], session_url: str | None) -> str:
    trace_id = timeline["checkout_trace_id"]
    order_id = timeline["order_id"]
    state = timeline["state"]
    links = [f'<a href="/api/checkouts/{escape(trace_id)}">order and job (JSON)</a>']
    if order_id:
        links.append(
            f'<a href="/api/portal/jobs?order_id={escape(order_id)}">job in the portal</a>'
        )
        links.append(
            f'<a href="/api/orders/{escape(order_id)}">amounts held, captured, refunded</a>'
        )
    if session_url:
        links.append(f'<a href="{escape(session_url)}">Stripe session</a>')
    summary = (
        "<div class=card>"
        f"<h1>Checkout {escape(trace_id)}</h1>"
        f"<span class='badge state-{escape(state)}' data-state='{escape(state)}'>"
        f"{escape(state)}</span>"
        "<dl>"
        f"<dt>order</dt><dd>{escape(order_id or '-')}</dd>"
        f"<dt>job</dt><dd>{escape(timeline['job_id'] or '-')}</dd>"
        f"<dt>session</dt><dd>{escape(timeline['session_id'] or '-')}</dd>"
        f"<dt>key</dt><dd>{escape(timeline['key_source'])}</dd>"
        f"<dt>created</dt><dd>{escape(timeline['created_at'])}</dd>"
        f"<dt>links</dt><dd>{' · '.join(links)}</dd>"
        "</dl></div>"
    )
    failures = "".join(_failure_html(f) for f in timeline["failures"])
    steps = "".join(_step_html(s) for s in timeline["steps"])
    return (
        summary
        + failures
        + f"<div class=card><ol class=timeline>{steps}</ol></div>"
        + _events_html(timeline.get("events", []))
    )


class DebugPageController(Controller):
    path = "/debug"
    include_in_schema = False
    # The page answers in HTML: a sign-in form for 401, a page for 403 and 429.
    exception_handlers = {
        Unauthorized: _unauthorized_page,
        Forbidden: _forbidden_page,
        RateLimited: _rate_limited_page,
    }

    @get("/checkouts/{ref:str}", guards=[require_scope(Scope.READ)])
    async def checkout_page(
        self,
        request: Request[Any, Any, Any],
        ref: FromPath[str],
        db_pool: NamedDependency[asyncpg.Pool],
    ) -> Response[str]:
        actor = principal_of(request).actor
        try:
            timeline = await inspect_checkout.timeline(
                db_pool, ref, request.app.state.settings.trace_url_template
            )
        except NotFound:
            return _page(
                "Not found", f"<div class=card>No checkout {escape(ref)}.</div>", 404, actor=actor
            )
        async with connection(db_pool) as conn:
            row = await checkouts.get_checkout(conn, uuid.UUID(timeline["checkout_trace_id"]))
        body = (row["response_body"] or {}) if row else {}
        session_url = (body.get("pay") or {}).get("session_url")
        return _page(
            f"Checkout {timeline['state']}", render_checkout(timeline, session_url), actor=actor
        )

    @get("/", guards=[require_scope(Scope.READ)])
    async def search(
        self,
        request: Request[Any, Any, Any],
        db_pool: NamedDependency[asyncpg.Pool],
        q: FromQuery[str] = "",
    ) -> Response[str]:
        actor = principal_of(request).actor
        q = q.strip()
        if not q:
            return _page(
                "Checkouts",
                "<div class=card>Search by trace id, order id or email.</div>",
                actor=actor,
            )
        if "@" not in q:
            return Response(
                "", status_code=303, headers={"Location": f"/debug/checkouts/{quote(q, safe='')}"}
            )
        async with connection(db_pool) as conn:
            rows = await checkouts.search_by_email(conn, normalize_email(q))
        items = "".join(
            f"<li><a href='/debug/checkouts/{r['checkout_id']}'>{escape(r['order_id'] or '-')}</a>"
            f" <span class='badge state-{escape(r['state'])}'>{escape(r['state'])}</span>"
            f" <span class=when>{escape(r['created_at'].isoformat()[:19])}</span></li>"
            for r in rows
        )
        return _page(
            "Checkouts",
            f"<div class=card><h1>{len(rows)} checkout(s)</h1><ul>{items}</ul></div>",
            actor=actor,
        )

    @post("/login")
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
        sign_in_gate: NamedDependency[SignInGate],
    ) -> Response[str]:
        refuse_cross_site(request)
        principal = await sign_in_gate.sign_in(data.get("token", ""), client_address(request))
        if principal is None:
            return _login("That key is not right.")
        if not principal.can(Scope.READ):
            raise Forbidden("this key does not have the read scope the debug page needs")
        start_session(request, principal)
        return Response(
            "",
            status_code=303,
            headers={"Location": _after_sign_in(request.headers.get("referer"))},
        )

    @post("/logout")
    async def logout(self, request: Request[Any, Any, Any]) -> Response[str]:
        refuse_cross_site(request)
        end_session(request)
        return Response("", status_code=303, headers={"Location": "/debug"})
