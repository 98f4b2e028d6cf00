"""The emulator takes the parameters and answers the values of the SDK it stands in for
(stripe 16): its types are the reference, not an older API version's."""

import re
from collections.abc import AsyncIterator, Iterator

import pytest
import stripe
from stripe._request_options import RequestOptions
from stripe.params.checkout._session_create_params import SessionCreateParams

from emulator_sdk import make_client, make_http_client, session_params
from stripe_checkout_emulator import EmulatorServer
from stripe_checkout_emulator.validate import CREATE_PARAMS, HOSTED_PAGE, UI_MODES


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as emulator:
        yield emulator


@pytest.fixture
async def sdk(server: EmulatorServer) -> AsyncIterator[stripe.StripeClient]:
    http_client = make_http_client("httpx")
    yield make_client(server.base_url, http_client)
    await http_client.close_async()


def literals(annotation: object) -> tuple[str, ...]:
    return tuple(re.findall(r"'([a-z_]+)'", str(annotation)))


def test_the_create_parameters_are_the_sdks_exactly() -> None:
    sdk_params = set(SessionCreateParams.__annotations__) - set(RequestOptions.__annotations__)
    assert sdk_params == CREATE_PARAMS
    assert "payment_method_types" not in CREATE_PARAMS  # gone from the current API


def test_the_ui_modes_are_the_sdks() -> None:
    assert literals(SessionCreateParams.__annotations__["ui_mode"]) == UI_MODES
    assert literals(stripe.checkout.Session.__annotations__["ui_mode"]) == UI_MODES
    assert HOSTED_PAGE in UI_MODES


async def test_a_session_says_hosted_page_and_takes_allowed_payment_method_types(
    sdk: stripe.StripeClient,
) -> None:
    default = await sdk.v1.checkout.sessions.create_async(session_params())
    allowed = await sdk.v1.checkout.sessions.create_async(
        session_params(ui_mode="hosted_page", allowed_payment_method_types=["card"])
    )

    assert (default.ui_mode, allowed.ui_mode) == ("hosted_page", "hosted_page")
    assert allowed.payment_method_types == ["card"]


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"payment_method_types": ["card"]}, "payment_method_types", "parameter_unknown"),
        ({"ui_mode": "hosted"}, "ui_mode", None),  # the old name
        ({"ui_mode": "embedded_page"}, "ui_mode", None),
    ],
)
async def test_what_the_current_api_does_not_have_is_refused(
    sdk: stripe.StripeClient, server: EmulatorServer, extra: dict, param: str, code: str | None
) -> None:
    before = len(server.state.sessions)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await sdk.v1.checkout.sessions.create_async(session_params(**extra))

    assert caught.value.http_status == 400
    assert caught.value.param == param
    if code is not None:
        assert caught.value.code == code
    assert len(server.state.sessions) == before
