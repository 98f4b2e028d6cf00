"""The timeline shows each step of a checkout in order, to an admin only."""

from __future__ import annotations

from support import checkout_body


async def test_timeline_lists_the_steps_in_order(client, admin):
    body = (await client.post("/api/checkout", json=checkout_body())).json()

    answer = await client.get(f"/api/checkouts/{body['checkout_trace_id']}/timeline", headers=admin)

    assert answer.status_code == 200
    timeline = answer.json()
    assert timeline["state"] == "session_created"
    events = [(s["kind"], s["event"]) for s in timeline["steps"]]
    assert events == [
        ("step", "checkout.received"),
        ("step", "order_and_job.created"),
        ("transition", "queue_job"),
        ("step", "stripe.session_created"),
        ("transition", "create_session"),
    ]
    transitions = [
        (s["from_state"], s["to_state"]) for s in timeline["steps"] if s["kind"] == "transition"
    ]
    assert transitions == [("pending_payment", "job_queued"), ("job_queued", "session_created")]
    written = timeline["steps"][1]["detail"]
    assert written["order_id"] == body["order_id"]
    assert written["job_id"] == body["job_id"]
    assert written["step_id"] == "bundle-default.schedule"
    stripe_step = timeline["steps"][3]
    assert stripe_step["duration_ms"] > 0
    assert stripe_step["detail"]["session_id"] == body["pay"]["session_id"]
    times = [s["at"] for s in timeline["steps"]]
    assert times == sorted(times)
    assert answer.headers["cache-control"] == "no-store"


async def test_timeline_is_also_found_by_order_id(client, admin):
    body = (await client.post("/api/checkout", json=checkout_body())).json()
    answer = await client.get(f"/api/orders/{body['order_id']}/timeline", headers=admin)
    assert answer.status_code == 200
    assert answer.json()["checkout_trace_id"] == body["checkout_trace_id"]


async def test_timeline_needs_the_admin_token(client):
    body = (await client.post("/api/checkout", json=checkout_body())).json()
    url = f"/api/checkouts/{body['checkout_trace_id']}/timeline"
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": "Basic x"},
    ):
        answer = await client.get(url, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"
        assert "steps" not in answer.text


async def test_unknown_checkout_is_404(client, admin):
    answer = await client.get(
        "/api/checkouts/00000000-0000-0000-0000-000000000000/timeline", headers=admin
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


async def test_checkout_view_shows_order_job_and_provider_session(client, admin):
    body = (await client.post("/api/checkout", json=checkout_body())).json()

    answer = await client.get(f"/api/checkouts/{body['checkout_trace_id']}", headers=admin)

    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert view["state"] == "session_created"
    assert view["order"]["order_id"] == body["order_id"]
    assert view["order"]["metadata_json"]["dispatch_job_id"] == body["job_id"]
    assert view["job"]["job_id"] == body["job_id"]
    assert view["job"]["order_id"] == body["order_id"]
    provider = view["provider_session"]
    assert provider["found"] is True
    assert provider["id"] == body["pay"]["session_id"]
    assert provider["client_reference_id"] == body["order_id"]
    assert provider["status"] == "open"


async def test_seq_follows_the_order_in_which_steps_happened(client, admin, stripe):
    """A client that sorts a timeline by seq sees a checkout, its replay and a failed one
    move forward, as it would sorting by time."""
    first = (await client.post("/api/checkout", json=checkout_body())).json()
    await client.post("/api/checkout", json=checkout_body())  # a replay
    stripe.faults.add("status", "POST /v1/checkout/sessions", status=400, times=1)
    failed = await client.post("/api/checkout", json=checkout_body(email="bo@example.com"))
    assert failed.status_code == 502

    for trace_id in (first["checkout_trace_id"], failed.json()["checkout_trace_id"]):
        steps = (await client.get(f"/api/checkouts/{trace_id}/timeline", headers=admin)).json()[
            "steps"
        ]
        seqs = [s["seq"] for s in steps]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        assert [s["at"] for s in steps] == sorted(s["at"] for s in steps)
    events = [s["event"] for s in steps]
    assert events[:3] == ["checkout.received", "order_and_job.created", "queue_job"]
    assert events[-2:] == ["fail", "clean"]
    replayed = (
        await client.get(f"/api/checkouts/{first['checkout_trace_id']}/timeline", headers=admin)
    ).json()["steps"][-1]
    assert replayed["event"] == "checkout.replayed"
