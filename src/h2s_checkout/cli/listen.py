"""`h2s-checkout listen`: a local subscriber that verifies each event as any receiver
would, with the standardwebhooks package, and prints it on one line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def summary(event: dict[str, Any], webhook_id: str) -> str:
    """One readable line: when, what, which order, its sequence, order and job status."""
    data = event.get("data") or {}
    order = data.get("order") or {}
    job = data.get("job") or {}
    return (
        f"{event.get('timestamp')} {event.get('type', '?'):<20} {order.get('order_id')} "
        f"#{data.get('sequence')} order={order.get('status')} job={job.get('status')} "
        f"webhook-id={webhook_id}"
    )


def build_app(secrets: list[str], *, as_json: bool, out: TextIO = sys.stdout) -> web.Application:
    """Answers 200 to an event any of ``secrets`` verifies, 400 to anything else."""
    receivers = [Webhook(secret) for secret in secrets]

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        refusal: Exception | None = None
        for receiver in receivers:
            try:
                event = receiver.verify(body, headers)
                break
            except (WebhookVerificationError, ValueError) as exc:
                refusal = exc
        else:
            print(f"rejected: {refusal}", file=sys.stderr, flush=True)
            return web.json_response({"error": str(refusal)}, status=400)
        webhook_id = request.headers.get("webhook-id", "")
        line = json.dumps(event, separators=(",", ":")) if as_json else summary(event, webhook_id)
        print(line, file=out, flush=True)
        return web.json_response({"received": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    return app


def run(args: argparse.Namespace) -> int:
    return listen(host=args.host, port=args.port, secrets=args.secret, as_json=args.json)


def listen(*, host: str, port: int, secrets: list[str], as_json: bool) -> int:
    try:
        app = build_app(secrets, as_json=as_json)
    except Exception as exc:  # the package refuses a secret that is not whsec_ + base64
        print(f"h2s-checkout listen: bad --secret: {exc}", file=sys.stderr)
        return 2
    print(
        f"listening on http://{host}:{port}/ for signed events (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    web.run_app(app, host=host, port=port, print=None, access_log=None)
    return 0
