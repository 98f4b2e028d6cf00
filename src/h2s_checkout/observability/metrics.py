"""Prometheus metrics: what the service did, by outcome, and how long each part took.

One registry per process; with several granian workers set PROMETHEUS_MULTIPROC_DIR so
that /metrics adds every worker up (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CHECKOUT_REQUESTS = Counter(
    "h2s_checkout_requests_total",
    "POST /api/checkout answers by outcome: created, replayed, or the error code",
    ["outcome"],
)
TRANSITIONS = Counter(
    "h2s_checkout_transitions_total",
    "State machine transitions written, by the state entered (final states included)",
    ["to_state"],
)
PHASE_SECONDS = Histogram(
    "h2s_checkout_phase_seconds",
    "Time spent in each phase of a checkout",
    ["phase"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STRIPE_CALL_SECONDS = Histogram(
    "h2s_stripe_call_seconds",
    "Each Stripe API call attempt, by operation and outcome (ok or the error code)",
    ["operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECONCILER_ACTIONS = Counter(
    "h2s_reconciler_actions_total", "What the reconciler did, by action", ["action"]
)
WEBHOOK_EVENTS = Counter(
    "h2s_webhook_events_total",
    "Stripe events received, by type and result (paid, duplicate, invalid_signature, ...)",
    ["type", "result"],
)
# Every HTTP answer, as litestar's Prometheus middleware named them, recorded by the one
# request middleware (api/middleware.py) instead of a second middleware per request.
HTTP_REQUESTS = Counter(
    "h2s_http_requests_total",
    "HTTP answers by method, route template and status",
    ["method", "path", "status_code"],
)
HTTP_SECONDS = Histogram(
    "h2s_http_request_duration_seconds",
    "Time from a request's arrival to its answer, by method, route template and status",
    ["method", "path", "status_code"],
)
HTTP_IN_PROGRESS = Gauge(
    "h2s_http_requests_in_progress", "Requests being answered now, by method", ["method"]
)
REFUNDS = Counter(
    "h2s_refunds_total",
    "Refunds by outcome: requested (owed), succeeded, failed, send_failed (will be resent)",
    ["outcome"],
)
EVENT_DELIVERIES = Counter(
    "h2s_event_deliveries_total",
    "Outbound event delivery attempts, by outcome: delivered, retrying, failed (retries "
    "spent), endpoint_gone (410: endpoint disabled), not_sent (leased, but its endpoint "
    "ended or its lease passed on before it left), unchecked (leased, but the database "
    "could not say whether it may leave: sent when its lease ends)",
    ["outcome"],
)
EVENT_DELIVERY_LAG = Histogram(
    "h2s_event_delivery_lag_seconds",
    "From an event's write in the outbox to its delivery (a 2xx), retries included",
    buckets=(
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
        60,
        300,
        1800,
        7200,
        86400,
    ),
)
REPLAY_BATCH_SIZE = Histogram(
    "h2s_replay_batch_size",
    "Replays answered by one call of h2s_replay_checkouts",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
CHECKOUT_FAST_PATH = Counter(
    "h2s_checkout_fast_path",
    "POST /api/checkout requests the fast path read: answered below the router, or "
    "passed to the route (a body that does not decode, a key the route refuses)",
    ["result"],
)
