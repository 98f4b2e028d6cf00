"""`h2s-checkout trace <id>`: a checkout's timeline, readable in a terminal."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from h2s_checkout.domain.errors import NotFound
from h2s_checkout.embedded_stack import embedded_runtime
from h2s_checkout.flows.inspect_checkout import timeline
from h2s_checkout.settings import load_settings
from h2s_checkout.store.pool import create_pool

_MARKS = {
    "checkout.replayed": "↺ replay",
    "checkout.resumed": "⟳ resumed",
    "checkout.conflict": "⚠ conflict",
    "payment.needs_refund": "⚠ paid after the checkout ended",
    "refund.failed": "✗ refund failed",
    "refund.send_failed": "⚠ refund not sent yet",
}


def _detail(detail: dict[str, Any]) -> str:
    shown = {k: v for k, v in detail.items() if v not in (None, "", {})}
    return " ".join(f"{k}={v}" for k, v in shown.items())


def render(timeline: dict[str, Any]) -> str:
    """The timeline as text: a header, one line per step, then the failures."""
    lines = [
        f"checkout {timeline['checkout_trace_id']}  state: {timeline['state']}",
        f"order {timeline['order_id'] or '-'}  job {timeline['job_id'] or '-'}  "
        f"session {timeline['session_id'] or '-'}  key: {timeline['key_source']}",
        "",
        f"{'time (UTC)':<15} {'+ms':>9} {'took ms':>9}  step",
    ]
    for step in timeline["steps"]:
        at = step["at"][11:23]
        since = step["since_previous_ms"]
        took = step["duration_ms"]
        if step["kind"] == "transition":
            what = f"● {step['from_state']} → {step['to_state']} ({step['event']})"
        else:
            what = f"  {_MARKS.get(step['event'], step['event'])}"
        detail = _detail(step["detail"])
        lines.append(
            f"{at:<15} {'' if since is None else f'{since:.1f}':>9} "
            f"{'' if took is None else f'{took:.1f}':>9}  {what}"
            + (f"  [{detail}]" if detail else "")
        )
    # The OpenTelemetry traces of the requests and passes that made the steps, in order.
    traces = list(
        dict.fromkeys(s["otel_trace_id"] for s in timeline["steps"] if s.get("otel_trace_id"))
    )
    if traces:
        lines.append("")
        lines.append(f"OpenTelemetry traces: {', '.join(traces)}")
    for event in timeline.get("events", []):
        lines.append("")
        lines.append(
            f"event {event['type']} #{event['sequence']} {event['event_id']} "
            f"at {event['created_at'][11:23]}"
        )
        for delivery in event["deliveries"] or [
            {"url": "no subscriber", "status": "", "attempts": []}
        ]:
            answers = ", ".join(
                str(a.get("status_code") or a.get("error")) for a in delivery["attempts"]
            )
            lines.append(f"  → {delivery['url']} {delivery['status']}  [{answers}]")
    for failure in timeline["failures"]:
        lines.append("")
        lines.append(
            f"FAILED in {failure['phase']}: {failure['error_code']} ({failure['error_class']})"
            f" provider_code={failure.get('provider_code')} http={failure.get('http_status')}"
            f" request={failure.get('provider_request_id')}"
        )
        lines.append(f"  {failure['message']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def read(dsn: str) -> dict:
        pool = await create_pool(
            dsn, min_size=1, max_size=1, prepared_statements=settings.prepared_statements
        )
        try:
            return await timeline(pool, args.ref)
        finally:
            await pool.close()

    with embedded_runtime(settings, migrate=False, start_emulator=False) as runtime:
        try:
            found = asyncio.run(read(runtime.settings.database_url or ""))
        except NotFound:
            print(f"no checkout {args.ref!r}", file=sys.stderr)
            return 1
    print(render(found))
    return 0
