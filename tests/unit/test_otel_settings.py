"""Tracing turns on with OpenTelemetry's standard variables; a bad value stops the start
naming its variable."""

from __future__ import annotations

import pytest

from h2s_checkout.settings import SettingsError, load_settings

ON = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


def test_tracing_is_off_without_an_endpoint():
    assert not load_settings({}).tracing


def test_an_endpoint_turns_it_on_and_the_sdk_switch_off_again():
    assert load_settings(ON).otel_endpoint == "http://127.0.0.1:4318"
    assert load_settings({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}).tracing
    assert not load_settings({**ON, "OTEL_SDK_DISABLED": "true"}).tracing


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({**ON, "OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://c:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({**ON, "OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        (
            {**ON, "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        ({"H2S_TRACE_URL_TEMPLATE": "http://jaeger/trace/"}, "H2S_TRACE_URL_TEMPLATE"),
    ],
)
def test_a_bad_value_names_its_variable(env, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_the_trace_url_template_is_kept():
    template = "http://localhost:16686/trace/{trace_id}"
    assert load_settings({"H2S_TRACE_URL_TEMPLATE": template}).trace_url_template == template
