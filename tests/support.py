"""Test helpers: request bodies and table counts."""

from __future__ import annotations

from typing import Any

import asyncpg

ADMIN_TOKEN = "test-admin-token-0123456789"
DATA_TABLES = (
    "h2s_checkout_failures",
    "h2s_checkout_traces",
    "h2s_dispatch_jobs",
    "h2s_orders",
    "h2s_checkouts",
    "h2s_recipients",
)


def checkout_body(
    email: str = "ana@example.com", items: list[dict[str, Any]] | None = None, **customer: Any
) -> dict[str, Any]:
    return {
        "customer": {
            "email": email,
            "name": "Ana",
            "phone": "+15555550100",
            "address": {
                "line1": "1 Main St",
                "city": "Austin",
                "state": "TX",
                "postal_code": "78701",
                "country": "US",
            },
            **customer,
        },
        "items": items if items is not None else [{"sku": "tv-mount", "quantity": 1}],
    }


async def table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    return {t: await conn.fetchval(f"select count(*) from {t}") for t in DATA_TABLES}


def command_for(body: dict[str, Any], idempotency_key: str | None = None) -> Any:
    """The flow's command for a request body, for tests that drive the flow directly."""
    import msgspec

    from h2s_checkout.api.checkout import to_command
    from h2s_checkout.api.schemas import CheckoutRequest

    return to_command(msgspec.convert(body, CheckoutRequest), idempotency_key)
