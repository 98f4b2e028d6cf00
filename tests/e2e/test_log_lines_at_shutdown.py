"""A worker holds its info lines for a moment (log_lines.py): stopping it writes them."""

from __future__ import annotations

import json

import httpx

from support import checkout_body


def test_the_last_requests_lines_are_written_when_the_server_stops_right_after(servers):
    server = servers()
    answer = httpx.post(f"{server.url}/api/checkout", json=checkout_body(), timeout=30)
    assert answer.status_code == 201
    request_id = answer.headers["x-request-id"]

    server.stop()  # at once: well within the interval the line is held for

    lines = [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert [(line["event"], line["status"]) for line in mine] == [("request", 201)]
    assert mine[0]["checkout_trace_id"] == answer.json()["checkout_trace_id"]
