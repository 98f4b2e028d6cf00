"""The client's address for limits: X-Forwarded-For read from the right, behind trusted
proxies only; limit buckets."""

from __future__ import annotations

import pytest

from h2s_checkout.api.client_address import ClientAddresses
from h2s_checkout.domain.limits import address_bucket, email_bucket, sign_in_bucket


def scope(peer: str | None, *forwarded: str) -> dict:
    return {
        "client": (peer, 5000) if peer else None,
        "headers": [(b"x-forwarded-for", f.encode()) for f in forwarded],
    }


PROXIES = ClientAddresses(["10.0.0.0/8", "127.0.0.1"])


@pytest.mark.parametrize(
    ("request_scope", "expected"),
    [
        (scope("203.0.113.9"), "203.0.113.9"),
        (scope("203.0.113.9", "198.51.100.1"), "203.0.113.9"),  # not a proxy: ignored
        (scope("10.0.0.2", "198.51.100.1"), "198.51.100.1"),
        (scope("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.7"), "198.51.100.1"),
        (scope("10.0.0.2", "6.6.6.6", "198.51.100.1"), "198.51.100.1"),  # two headers
        (scope("10.0.0.2", "not-an-ip, 10.0.0.7"), "10.0.0.7"),
        (scope("10.0.0.2", "10.0.0.8, 10.0.0.7"), "10.0.0.8"),  # all ours: the farthest
        (scope("10.0.0.2"), "10.0.0.2"),
        (scope(None, "198.51.100.1"), None),
        (scope("10.0.0.2", " 2001:db8::1 "), "2001:db8::1"),
    ],
)
def test_the_client_is_the_first_hop_from_the_right_that_is_not_our_proxy(request_scope, expected):
    assert PROXIES.of(request_scope) == expected


def test_without_trusted_proxies_the_header_is_never_read():
    assert ClientAddresses([]).of(scope("10.0.0.2", "198.51.100.1")) == "10.0.0.2"


def test_an_ipv6_client_is_counted_by_its_64_block():
    assert address_bucket("2001:db8:1:2::1") == address_bucket("2001:db8:1:2:ffff::9")
    assert address_bucket("2001:db8:1:3::1") != address_bucket("2001:db8:1:2::1")
    assert address_bucket("::ffff:198.51.100.1") == "address:198.51.100.1"
    assert address_bucket("198.51.100.1") == "address:198.51.100.1"
    assert sign_in_bucket("198.51.100.1", "h2s_key_AbCdEfGh") == "sign-in:198.51.100.1:h2s_key_AbCd"
    assert sign_in_bucket("198.51.100.1", "h2s_key_AbCdXyZw") == "sign-in:198.51.100.1:h2s_key_AbCd"
    assert sign_in_bucket("198.51.100.1", "the-bootstrap-token") == "sign-in:198.51.100.1:token"
    assert sign_in_bucket("2001:db8::1", "junk") == "sign-in:2001:db8::/64:token"


def test_an_email_is_counted_by_a_digest_only():
    bucket = email_bucket("ana@example.com")
    assert bucket.startswith("email:")
    assert "ana" not in bucket
