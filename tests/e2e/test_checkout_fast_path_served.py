"""Under granian, as in production: a new checkout and its retry are answered by the
checkout fast path, with the answer the route gives on another replica (the body sent
streamed, without a Content-Length, which only the route reads)."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import checkout_body, comparable, in_chunks

pytestmark = pytest.mark.slow


def _fast_path(metrics: str) -> dict[str, float]:
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "h2s_checkout_fast_path_total"
    }


async def test_a_checkout_and_its_retry_are_answered_by_the_fast_path_as_the_route_would(
    servers, db, stripe
):
    maker, other = servers(), servers()
    body, headers = checkout_body(email="retry@example.com"), {"Idempotency-Key": "e2e-fast"}
    streamed = {**headers, "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=30) as http:
        first = await http.post(f"{maker.url}/api/checkout", json=body, headers=headers)
        by_route = await http.post(
            f"{other.url}/api/checkout",
            content=in_chunks(json.dumps(body).encode()),
            headers=streamed,
        )
        by_fast_path = await http.post(f"{maker.url}/api/checkout", json=body, headers=headers)
        maker_counts = _fast_path((await http.get(f"{maker.url}/metrics")).text)
        other_counts = _fast_path((await http.get(f"{other.url}/metrics")).text)

    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert comparable(by_fast_path, "date") == comparable(by_route, "date")  # the clock's
    assert by_fast_path.headers["idempotent-replayed"] == "true"
    assert by_fast_path.json() == first.json()
    # The maker answered both of its requests; the other server's one request, streamed,
    # was the route's.
    assert maker_counts == {"answered": 2.0, "passed": 0.0}
    assert other_counts == {"answered": 0.0, "passed": 0.0}
    assert await db.fetchval("select count(*) from h2s_orders") == 1
    assert len(stripe.sessions) == 1
