"""GET /metrics counts outcomes, transitions, Stripe calls, reconciler actions and events."""

from __future__ import annotations

from support import checkout_body, delta, scrape, signed, stripe_event


async def test_metrics_follow_what_happened(client, db, stripe, clock):
    before = await scrape(client)

    created = (await client.post("/api/checkout", json=checkout_body())).json()
    await client.post("/api/checkout", json=checkout_body())  # a replay
    stripe.faults.add("status", "POST /v1/checkout/sessions", status=400, times=1)
    await client.post("/api/checkout", json=checkout_body(email="bo@example.com"))
    session = stripe.complete_session(created["pay"]["session_id"])
    body, headers = signed(stripe_event("checkout.session.completed", session))
    await client.post("/api/stripe/webhook", content=body, headers=headers)
    await client.post("/api/stripe/webhook", content=body, headers=headers)
    await client.post("/api/checkout", json=checkout_body(email="cy@example.com"))
    clock.advance(minutes=63)
    await client.app.state.reconciler.run_once()

    after = await scrape(client)
    requests = "h2s_checkout_requests_total"
    assert delta(before, after, requests, outcome="created") == 2
    assert delta(before, after, requests, outcome="replayed") == 1
    assert delta(before, after, requests, outcome="payment_provider_error") == 1
    transitions = "h2s_checkout_transitions_total"
    assert delta(before, after, transitions, to_state="paid") == 1
    assert delta(before, after, transitions, to_state="cleaned") == 1
    assert delta(before, after, transitions, to_state="expired") == 1
    assert (
        delta(
            before, after, "h2s_stripe_call_seconds_count", operation="create_session", outcome="ok"
        )
        >= 2
    )
    assert delta(before, after, "h2s_checkout_phase_seconds_count", phase="create_session") == 3
    events = "h2s_webhook_events_total"
    assert delta(before, after, events, type="checkout.session.completed", result="paid") == 1
    assert delta(before, after, events, type="checkout.session.completed", result="duplicate") == 1
    assert delta(before, after, "h2s_reconciler_actions_total", action="session_expired") == 1


async def test_http_answers_are_counted_by_route_template_not_by_raw_path(client, admin):
    before = await scrape(client)
    created = (await client.post("/api/checkout", json=checkout_body())).json()
    await client.get(f"/api/checkouts/{created['checkout_trace_id']}/timeline", headers=admin)
    await client.get("/no/such/page/1")
    await client.get("/no/such/page/2")
    after = await scrape(client)

    post = {"method": "POST", "path": "/api/checkout", "status_code": "201"}
    assert delta(before, after, "h2s_http_requests_total", **post) == 1
    assert delta(before, after, "h2s_http_request_duration_seconds_count", **post) == 1
    timeline = {"method": "GET", "path": "/api/checkouts/{ref}/timeline", "status_code": "200"}
    assert delta(before, after, "h2s_http_requests_total", **timeline) == 1
    unmatched = {"method": "GET", "path": "<unmatched>", "status_code": "404"}
    assert delta(before, after, "h2s_http_requests_total", **unmatched) == 2
    assert not any("/no/such" in str(labels) for _name, labels in after)
