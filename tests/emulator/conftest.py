"""Fixtures shared by the emulator's tests; each module defines its own `server`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from emulator_sdk import API_KEY
from stripe_checkout_emulator import EmulatorServer


@pytest.fixture(scope="module")
def sdk(server: EmulatorServer) -> Iterator[stripe.StripeClient]:
    """The official SDK, synchronous, pointed at this module's emulator, no retries."""
    http_client = stripe.HTTPXClient(allow_sync_methods=True)
    yield stripe.StripeClient(
        API_KEY,
        base_addresses={"api": server.base_url},
        http_client=http_client,
        max_network_retries=0,
    )
    http_client.close()
