"""Every IPv4 form a resolver accepts (inet_aton's BSD forms), parsed by our own code.

`ipaddress` takes only the four-decimal form, but getaddrinfo, curl and some HTTP
clients also take `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1`, all 127.0.0.1.
Whether a URL's host is one of those must not depend on which client (or which version
of aiohttp) happens to parse it, so the address guard asks this module first.
"""

from __future__ import annotations

import ipaddress
import string

_HEX_DIGITS = frozenset(string.hexdigits)
_OCTAL_DIGITS = frozenset("01234567")
# The last part fills the bits the parts before it left: a, a.b (24 bits), a.b.c (16).
_LAST_PART_MAX = {1: 0xFFFFFFFF, 2: 0xFFFFFF, 3: 0xFFFF, 4: 0xFF}


def parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """The address ``text`` names as inet_aton reads it; None when it names none.

    One to four dot-separated parts, each decimal, octal (a leading 0) or hex (0x);
    every part but the last at most 255, the last filling the remaining bytes. Trailing
    whitespace, which inet_aton also ignores, is not accepted: a URL's host has none.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _part(part)
        if value is None:
            return None
        values.append(value)
    *leading, last = values
    if any(v > 0xFF for v in leading) or last > _LAST_PART_MAX[len(values)]:
        return None
    number = last
    for i, value in enumerate(leading):
        number |= value << (24 - 8 * i)
    return ipaddress.IPv4Address(number)


def _part(part: str) -> int | None:
    # strtoul(part, base 0) that must use the whole part, as inet_aton requires.
    if not part or not part[0].isdigit() or not part.isascii():
        return None
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if not digits or not set(digits) <= _HEX_DIGITS:
            return None
        return int(digits, 16)
    if part[0] == "0":
        if not set(part) <= _OCTAL_DIGITS:
            return None
        return int(part, 8)
    return int(part) if part.isdigit() else None
