"""Our IPv4 parser reads every form inet_aton reads, and nothing else."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from h2s_checkout.domain.ipv4_forms import parse_ipv4


def inet_aton(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.0.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("2852039166", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("10.0x10203", "10.1.2.3"),
        ("0", "0.0.0.0"),
        ("4294967295", "255.255.255.255"),
        ("1.2.3.4", "1.2.3.4"),
    ],
)
def test_the_forms_resolvers_accept_land_where_inet_aton_puts_them(text, address):
    assert parse_ipv4(text) == ipaddress.IPv4Address(address) == inet_aton(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.2.3.",
        ".1",
        "1..2",
        "08",
        "0x",
        "0x.1",
        "256.1",
        "1.2.3.4.5",
        "4294967296",
        "1.16777216",
        "example.com",
        "0x1g",
        "١٢٧.1",
        "-1",
        "+1",
        " 1",
    ],
)
def test_what_inet_aton_refuses_names_no_address(text):
    assert parse_ipv4(text) is None
    assert inet_aton(text) is None


_PART = st.one_of(
    st.integers(0, 2**33).map(str),
    st.integers(0, 2**33).map(lambda n: f"0{n:o}"),
    st.integers(0, 2**33).map(lambda n: f"0x{n:x}"),
    st.integers(0, 2**33).map(lambda n: f"0X{n:X}"),
    st.text("0123456789abcdefxX", max_size=6),
)


@settings(max_examples=3000)
@given(
    st.lists(_PART, min_size=0, max_size=5).map(".".join)
    | st.text("0123456789abcdefxX.", max_size=24)
)
@example("00000000000000000000001")
@example("0x00000000000000007f.1")
def test_the_parser_agrees_with_inet_aton(text):
    assert parse_ipv4(text) == inet_aton(text)
