"""Outbound events, the pure parts: schedule, signatures (proved with the standardwebhooks
package) and the addresses a subscriber may point at."""

from __future__ import annotations

import ipaddress
import time
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from h2s_checkout.domain.errors import InvalidRequest
from h2s_checkout.domain.events import (
    JITTER,
    ReservedTargets,
    address_refusal,
    check_url,
    new_secret,
    retry_delay,
    secret_key,
    service_targets,
    signature_header,
)


def test_the_retry_schedule_is_the_specifications_with_jitter_then_spent():
    expected = [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert [retry_delay(n, 0.0).total_seconds() for n in range(1, 8)] == expected
    stretched = retry_delay(1, 0.999)
    assert stretched is not None
    assert timedelta(seconds=5) < stretched < timedelta(seconds=5 * (1 + JITTER))
    assert retry_delay(8, 0.5) is None  # the eighth attempt failed: the delivery failed


def test_a_signature_verifies_with_the_standardwebhooks_package():
    secret = new_secret()
    body = b'{"type":"order.paid","timestamp":"2026-11-28T10:00:00.000000Z","data":{}}'
    now = int(time.time())
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(now),
        "webhook-signature": signature_header([secret], "evt_1", now, body),
    }

    assert Webhook(secret).verify(body, headers)["type"] == "order.paid"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"paid", b"PAID"), headers)


def test_during_a_rotation_both_secrets_sign():
    old, new = new_secret(), new_secret()
    body, now = b"{}", int(time.time())
    header = signature_header([new, old], "evt_2", now, body)
    headers = {"webhook-id": "evt_2", "webhook-timestamp": str(now), "webhook-signature": header}

    assert len(header.split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers, json_parse=False) is None


def test_secrets_are_whsec_base64_of_24_to_64_bytes():
    assert len(secret_key(new_secret())) == 24
    for bad in ("abc", "whsec_!!!", "whsec_" + "QUJD"):
        with pytest.raises(ValueError, match="signing secret"):
            secret_key(bad)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "http"),
        ("file:///etc/passwd", "http"),
        ("https://user:pw@example.com/h", "credentials"),
        ("https://user@example.com/h", "credentials"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://169.254.10.1/", "link-local"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://metadata.google.internal/", "metadata"),
        ("http://0.0.0.0:9000/", "unicast"),
        ("http://224.0.0.1/", "unicast"),
        ("http://127.0.0.1:9000/h", "private"),
        ("http://localhost:9000/h", "private"),
        ("http://10.1.2.3/h", "private"),
        ("http://192.168.1.10/h", "private"),
        ("http://[::1]:9000/h", "private"),
        ("http://100.64.0.1/h", "public"),
        ("https://exa mple.com/", "http(s) URL"),
        ("https://", "host"),
        ("http://example.com:99999/", "valid"),
    ],
)
def test_urls_a_subscriber_may_not_use_are_refused(url, why):
    with pytest.raises(InvalidRequest) as refused:
        check_url(url, allow_private=False)
    assert why in refused.value.message


def test_private_and_loopback_only_when_allowed_and_metadata_never():
    assert check_url("http://127.0.0.1:9000/h", allow_private=True).port == 9000
    assert check_url("http://localhost/h", allow_private=True).port == 80
    assert check_url("https://10.0.0.5/h", allow_private=True).port == 443
    for never in ("http://169.254.169.254/", "http://[fd00:ec2::254]/"):
        with pytest.raises(InvalidRequest):
            check_url(never, allow_private=True)


def test_public_addresses_and_names_pass_the_syntax_check():
    assert check_url("https://dispatch.example.com/h2s", allow_private=False).address is None
    assert address_refusal(ipaddress.ip_address("93.184.215.14"), allow_private=False) is None


@pytest.mark.parametrize(
    "url", ["http://2130706433/", "http://127.1/", "http://0x7f.1/", "http://2852039166/"]
)
def test_loose_ipv4_forms_are_judged_as_the_address_they_name(url):
    with pytest.raises(InvalidRequest) as refused:
        check_url(url, allow_private=False)
    assert "private or loopback" in refused.value.message or "metadata" in refused.value.message


def test_the_metadata_address_in_any_form_is_refused_whatever_the_setting():
    for url in ("http://2852039166/", "http://0xa9.0xfe.0xa9.0xfe/", "http://169.254.43518/"):
        with pytest.raises(InvalidRequest, match="metadata"):
            check_url(url, allow_private=True)


def test_reserved_targets_are_refused_on_every_local_spelling_but_not_other_ports():
    reserved = ReservedTargets(
        service_targets(
            host="0.0.0.0",  # bound to every interface
            port=8000,
            public_base_url="https://shop.example.com",
            provider_base_url="http://127.0.0.1:12111",
        ),
        frozenset({ipaddress.ip_address("10.1.2.3")}),
    )
    for url, what in [
        ("http://127.0.0.1:8000/", "own"),
        ("http://10.1.2.3:8000/", "own"),  # an interface of this machine
        ("http://localhost:8000/", "own"),
        ("https://SHOP.example.com/x", "own"),
        ("https://shop.example.com:443/x", "own"),
        ("http://127.0.0.1:12111/_emulator/config", "payment provider"),
        ("http://127.1:12111/", "payment provider"),
        ("http://[::1]:12111/", "payment provider"),
        ("http://[::ffff:127.0.0.1]:12111/", "payment provider"),
    ]:
        with pytest.raises(InvalidRequest, match=what):
            check_url(url, allow_private=True, reserved=reserved)
    assert check_url("http://127.0.0.1:9000/", allow_private=True, reserved=reserved)
    assert check_url("http://10.1.2.4:8000/", allow_private=True, reserved=reserved)
    assert check_url("https://shop.example.com:8443/", allow_private=True, reserved=reserved)
    assert reserved.named_hosts() == {"shop.example.com"}
