"""What a limit counts: buckets for client addresses, emails and sign-ins. Pure code.

A bucket is the name of a counter in h2s_rate_counters. An IPv6 client is counted by its
/64, the block one subscriber usually holds: counting single IPv6 addresses would let one
client pick a fresh address per request. An email is kept only as a digest.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CheckoutLimits:
    """New checkouts allowed per minute; 0 turns a limit off."""

    per_address: int = 0
    per_email: int = 0

    def buckets(self, client_address: str | None, email_normalized: str) -> list[tuple[str, int]]:
        """(bucket, limit) for each limit in force on one request."""
        found: list[tuple[str, int]] = []
        if self.per_address and client_address:
            found.append((address_bucket(client_address), self.per_address))
        if self.per_email:
            found.append((email_bucket(email_normalized), self.per_email))
        return found


def address_bucket(client_address: str) -> str:
    try:
        ip = ipaddress.ip_address(client_address)
    except ValueError:
        return f"address:{client_address[:64]}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"address:{ip.ipv4_mapped}"
        return f"address:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"address:{ip}"


def email_bucket(email_normalized: str) -> str:
    return "email:" + hashlib.sha256(email_normalized.encode()).hexdigest()[:32]


def sign_in_bucket(client_address: str) -> str:
    return "sign-in:" + address_bucket(client_address).removeprefix("address:")
