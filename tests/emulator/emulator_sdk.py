"""Helpers for the emulator tests: SDK clients pointed at an emulator, sample params, its
hosted Pay form as a browser fills it in (the service's tests use that one too)."""

import json
import re
from pathlib import Path
from typing import Any

import httpx
import stripe

# Stripe's own fixture objects, trimmed to the resources the project uses (see its README).
FIXTURES = Path(__file__).parents[1] / "fixtures/stripe/fixtures3.json"
API_KEY = "sk_test_emulator"


def fixture_session_keys() -> list[str]:
    """Top-level keys of checkout.session in Stripe's fixtures."""
    resources = json.loads(FIXTURES.read_text())["resources"]
    return list(resources["checkout.session"])


def make_http_client(kind: str, timeout: float = 5.0) -> stripe.HTTPClient:
    if kind == "httpx":
        return stripe.HTTPXClient(timeout=timeout)
    if kind == "aiohttp":
        return stripe.AIOHTTPClient(timeout=timeout)
    raise ValueError(kind)


def make_client(
    base_url: str, http_client: stripe.HTTPClient, retries: int = 0, api_key: str = API_KEY
) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": base_url},
        http_client=http_client,
        max_network_retries=retries,
    )


def session_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "success_url": "https://shop.test/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.test/cancel",
        "client_reference_id": "order-123",
        "customer_email": "jane@example.com",
        "metadata": {"order_id": "order-123"},
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 1500,
                    "product_data": {"name": "Gutter cleaning"},
                },
                "quantity": 2,
            },
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 999,
                    "product_data": {"name": "Call-out fee"},
                },
                "quantity": 1,
            },
        ],
    }
    params.update(overrides)
    return params


def pay_form(session_url: str, **fields: str) -> dict[str, str]:
    """What the emulator's hosted Pay form sends: the page's own pay_token, read from the
    page as a browser would, and ``fields`` (email, method, outcome, delay)."""
    page = httpx.get(session_url, timeout=10)
    found = re.search(r'name="pay_token" value="(\w+)"', page.text)
    assert found, f"no pay form at {session_url}: {page.status_code} {page.text[:300]}"
    return {"pay_token": found[1], **fields}
