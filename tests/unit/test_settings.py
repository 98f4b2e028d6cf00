"""Each variable has a default; a bad value stops start-up and names the variable."""

from __future__ import annotations

import pytest

from h2s_checkout.settings import SettingsError, load_settings


def test_defaults_run_everything_embedded():
    settings = load_settings({})
    assert settings.port == 8000
    assert settings.database_url is None
    assert settings.payment_mode == "embedded-emulator"
    assert settings.admin_token is None
    assert settings.public_base_url == "http://localhost:8000"
    assert settings.checkout_phase_slots == 6
    assert load_settings({"H2S_CHECKOUT_PHASE_SLOTS": "2"}).checkout_phase_slots == 2


def test_payment_modes():
    assert load_settings({"STRIPE_API_BASE": "http://127.0.0.1:12111"}).payment_mode == "emulator"
    assert load_settings({"STRIPE_API_KEY": "sk_test_abc"}).payment_mode == "stripe"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("DATABASE_URL", "mysql://x/y"),
        ("STRIPE_API_KEY", "pk_test_publishable"),
        ("STRIPE_API_BASE", "localhost:12111"),
        ("PUBLIC_BASE_URL", "ftp://shop"),
        ("H2S_ADMIN_TOKEN", "short"),
        ("H2S_SESSION_TTL_MINUTES", "5"),
        ("H2S_LOG_FORMAT", "xml"),
        ("H2S_DB_TIMEOUT_S", "0"),
        ("H2S_DB_TIMEOUT_S", "ten"),
        ("H2S_LIMIT_CHECKOUTS_PER_MINUTE_IP", "-1"),
        ("H2S_LIMIT_CHECKOUTS_PER_MINUTE_EMAIL", "many"),
        ("H2S_LIMIT_LOGIN_FAILURES", "10001"),
        ("H2S_TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal"),
        ("H2S_CHECKOUT_PHASE_SLOTS", "0"),
        ("H2S_CHECKOUT_PHASE_SLOTS", "all"),
        ("H2S_CAPTURE", "later"),
    ],
)
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("H2S_SUCCESS_URL", "shop.example/thanks", "http"),
        ("H2S_SUCCESS_URL", "https://shop.example/thanks?s={SESSION_ID}", "{SESSION_ID}"),
        ("H2S_SUCCESS_URL", "https://shop.example/thanks?s={CHECKOUT_SESSION_ID", "'{'"),
        ("H2S_CANCEL_URL", "https://shop.example/cart?s={CHECKOUT_SESSION_ID}", "success URL"),
        ("H2S_CANCEL_URL", "javascript:alert(1)", "http"),
    ],
)
def test_a_bad_return_url_template_names_its_variable_and_its_fault(name, value, says):
    with pytest.raises(SettingsError, match=name) as caught:
        load_settings({name: value})
    assert says in str(caught.value)


def test_return_url_templates_are_kept_for_the_flow_to_fill():
    settings = load_settings(
        {
            "H2S_SUCCESS_URL": "https://shop.example/thanks/{ORDER_ID}?s={CHECKOUT_SESSION_ID}",
            "H2S_CANCEL_URL": "https://shop.example/cart?cancelled={ORDER_ID}",
        }
    )
    assert settings.success_url == "https://shop.example/thanks/{ORDER_ID}?s={CHECKOUT_SESSION_ID}"
    assert settings.cancel_url == "https://shop.example/cart?cancelled={ORDER_ID}"
    assert load_settings({}).success_url is None  # this service's own pages


def test_limits_default_on_and_trusted_proxies_are_read_as_networks():
    settings = load_settings({"H2S_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1,::1"})
    assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1/32", "::1/128")
    assert (
        settings.limit_checkouts_per_minute_ip,
        settings.limit_checkouts_per_minute_email,
        settings.limit_checkouts_per_minute_key,
        settings.limit_login_failures,
    ) == (30, 10, 600, 10)
    off = load_settings({"H2S_LIMIT_CHECKOUTS_PER_MINUTE_IP": "0"})
    assert off.limit_checkouts_per_minute_ip == 0
    assert load_settings({}).trusted_proxies == ()


def test_the_environment_subscriber_is_checked_as_the_api_would():
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # 24 bytes
    url = "https://dispatch.example.com/h2s"
    settings = load_settings({"H2S_EVENT_ENDPOINT_URL": url, "H2S_EVENT_ENDPOINT_SECRET": secret})
    assert (settings.event_endpoint_url, settings.event_endpoint_secret) == (url, secret)
    for env, name in [
        ({"H2S_EVENT_ENDPOINT_URL": url}, "H2S_EVENT_ENDPOINT_SECRET"),
        (
            {
                "H2S_EVENT_ENDPOINT_URL": "http://169.254.169.254/",
                "H2S_EVENT_ENDPOINT_SECRET": secret,
            },
            "H2S_EVENT_ENDPOINT_URL",
        ),
        (
            {"H2S_EVENT_ENDPOINT_URL": url, "H2S_EVENT_ENDPOINT_SECRET": "hunter2"},
            "H2S_EVENT_ENDPOINT_SECRET",
        ),
        ({"H2S_EVENTS_ALLOW_PRIVATE": "maybe"}, "H2S_EVENTS_ALLOW_PRIVATE"),
    ]:
        with pytest.raises(SettingsError, match=name):
            load_settings(env)


def test_private_subscribers_are_allowed_on_the_embedded_stack_only_by_default():
    assert load_settings({}).events_allow_private is True
    external = {"DATABASE_URL": "postgresql://db/h2s"}
    assert load_settings(external).events_allow_private is False
    assert load_settings({**external, "H2S_EVENTS_ALLOW_PRIVATE": "true"}).events_allow_private
    assert load_settings({"H2S_EVENTS_ALLOW_PRIVATE": "false"}).events_allow_private is False


def test_a_transaction_pooler_keeps_no_prepared_statements_and_no_session_state():
    pooled = "postgresql://app@pgbouncer:6432/shop"
    direct = "postgresql://app@db:5432/shop"
    plain = load_settings({"DATABASE_URL": direct})
    assert (plain.db_pooler, plain.prepared_statements, plain.session_database_url) == (
        "none",
        True,
        direct,
    )
    alone = load_settings({"DATABASE_URL": pooled, "H2S_DB_POOLER": "transaction"})
    assert (alone.transaction_pooler, alone.prepared_statements) == (True, False)
    assert alone.session_database_url is None  # no LISTEN, migrations under their own lock
    both = load_settings(
        {"DATABASE_URL": pooled, "H2S_DB_POOLER": "Transaction", "H2S_DATABASE_DIRECT_URL": direct}
    )
    assert (both.db_pooler, both.session_database_url) == ("transaction", direct)
    kept = load_settings({"DATABASE_URL": pooled, "H2S_DB_POOLER": "transaction-prepared"})
    assert (kept.transaction_pooler, kept.prepared_statements) == (True, True)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"DATABASE_URL": "postgresql://db/x", "H2S_DB_POOLER": "session"}, "H2S_DB_POOLER"),
        ({"H2S_DB_POOLER": "transaction"}, "H2S_DB_POOLER"),
        ({"H2S_DATABASE_DIRECT_URL": "postgresql://db/x"}, "H2S_DATABASE_DIRECT_URL"),
        (
            {"DATABASE_URL": "postgresql://db/x", "H2S_DATABASE_DIRECT_URL": "db:5432"},
            "H2S_DATABASE_DIRECT_URL",
        ),
    ],
)
def test_a_pooler_setting_that_cannot_hold_is_refused(env, says):
    with pytest.raises(SettingsError, match=says):
        load_settings(env)


def test_the_capture_policy_is_at_booking_unless_set():
    assert load_settings({}).capture == "at_booking"
    assert load_settings({"H2S_CAPTURE": "on_completion"}).capture == "on_completion"
