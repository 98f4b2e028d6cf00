"""What a limit counts: buckets for client addresses, emails and sign-ins. Pure code.

A bucket is the name of a counter in h2s_rate_counters. An IPv6 client is counted by its
/64, the block one subscriber usually holds: counting single IPv6 addresses would let one
client pick a fresh address per request. An email is kept only as a digest.

Failed sign-ins are counted per client address and per what was tried: an API key by its
hint (its first characters, as key lists show them), anything else (the bootstrap token,
the only secret a person may have made guessable) in one bucket of its own. Behind a proxy
we do not trust, every person signs in from the proxy's address; with one bucket per
address, anyone could use it up and lock every person out. A key cannot be guessed (256
random bits), so what the limit stops there is one caller retrying one key, and other
people's failures (other hints) never lock a right key out.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from h2s_checkout.domain.access import key_hint, looks_like_key


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


def sign_in_bucket(client_address: str, presented: str) -> str:
    """The counter a failed sign-in with ``presented`` goes to (the module says why)."""
    tried = key_hint(presented) if looks_like_key(presented) else "token"
    return f"sign-in:{address_bucket(client_address).removeprefix('address:')}:{tried}"
