"""The stripe SDK's log lines: not formatted when nobody writes them, written as ever when
someone does (payments/sdk_logging.py), over a real call to the emulator."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from stripe import _api_requestor, _util

from h2s_checkout.payments import sdk_logging
from h2s_checkout.payments.port import SessionRequest
from h2s_checkout.payments.stripe_gateway import StripeGateway
from h2s_checkout.settings import EMULATOR_API_KEY
from support import session_request


def a_session_request() -> SessionRequest:
    ref = uuid.uuid4().hex[:16].upper()
    return session_request(f"ORD-{ref}", f"sdk-logging-{ref}")


@asynccontextmanager
async def gateway_for(emulator: Any) -> AsyncIterator[StripeGateway]:
    gateway = StripeGateway(EMULATOR_API_KEY, api_base=emulator.base_url)
    try:
        yield gateway
    finally:
        await gateway.close()


@pytest.fixture
def formatted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every message the SDK formats (its logfmt), in order."""
    seen: list[dict[str, Any]] = []
    sdk_logfmt = _util.logfmt

    def counting(props: dict[str, Any]) -> str:
        seen.append(props)
        return sdk_logfmt(props)

    monkeypatch.setattr(_util, "logfmt", counting)
    return seen


@pytest.fixture
def stripe_logger_level() -> Iterator[None]:
    logger = logging.getLogger("stripe")
    before = logger.level
    yield
    logger.setLevel(before)


async def test_the_gateway_installs_the_level_checks_where_this_sdk_keeps_its_log_functions(
    emulator,
):
    async with gateway_for(emulator):
        pass
    # If an SDK upgrade moves them, this fails and says so: install() would change nothing.
    assert sdk_logging.install() is True
    assert _util.log_debug is sdk_logging._log_debug
    assert _api_requestor.log_info is sdk_logging._log_info


async def test_nothing_is_formatted_while_the_stripe_logger_is_at_warning(
    emulator, stripe, formatted, stripe_logger_level, monkeypatch
):
    monkeypatch.delenv("STRIPE_LOG", raising=False)
    monkeypatch.setattr(_util, "STRIPE_LOG", None)
    logging.getLogger("stripe").setLevel(logging.WARNING)
    async with gateway_for(emulator) as gateway:
        session = await gateway.create_session(a_session_request())
    assert session.id.startswith("cs_")
    assert formatted == []


async def test_every_line_is_formatted_and_written_when_the_stripe_logger_wants_it(
    emulator, stripe, formatted, stripe_logger_level, caplog
):
    with caplog.at_level(logging.DEBUG, logger="stripe"):
        async with gateway_for(emulator) as gateway:
            session = await gateway.create_session(a_session_request())
    messages = [props["message"] for props in formatted]
    assert "Request to Stripe api" in messages
    assert "API response body" in messages
    written = [r.getMessage() for r in caplog.records if r.name == "stripe"]
    assert any("Request to Stripe api" in m for m in written)
    assert any(session.id in m for m in written if "API response body" in m)


async def test_stripe_log_info_in_the_environment_still_prints_info_lines(
    emulator, stripe, formatted, stripe_logger_level, monkeypatch, capsys
):
    logging.getLogger("stripe").setLevel(logging.WARNING)
    monkeypatch.setattr(_util, "STRIPE_LOG", "info")
    async with gateway_for(emulator) as gateway:
        await gateway.create_session(a_session_request())
    messages = [props["message"] for props in formatted]
    assert "Request to Stripe api" in messages
    assert "API response body" not in messages  # a debug line: not at info
    assert "message='Request to Stripe api'" in capsys.readouterr().err
