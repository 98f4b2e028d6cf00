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

from h2s_checkout.domain.access import Principal, key_hint, looks_like_key


@dataclass(frozen=True, slots=True)
class CheckoutLimits:
    """New checkouts allowed per minute; 0 turns a limit off.

    A request that presents a key with the checkout scope (a storefront's own server, all
    of whose customers arrive from its one address) counts against its key instead of its
    address; every request counts against its customer's email.
    """

    per_address: int = 0
    per_email: int = 0
    per_key: int = 0

    def buckets(
        self,
        client_address: str | None,
        email_normalized: str,
        caller: Principal | None = None,
    ) -> list[tuple[str, int]]:
        """(bucket, limit) for each limit in force on one request."""
        found: list[tuple[str, int]] = []
        if caller is not None:
            if self.per_key:
                found.append((key_bucket(caller), self.per_key))
        elif self.per_address and client_address:
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


def key_bucket(caller: Principal) -> str:
    """A key's own counter, by its id: a key made later under the same name starts afresh.
    The bootstrap token has no id; it counts under its name."""
    return f"key:{caller.key_id or caller.name}"


def email_bucket(email_normalized: str) -> str:
    return "email:" + hashlib.sha256(email_normalized.encode()).hexdigest()[:32]


def sign_in_bucket(client_address: str, presented: str) -> str:
    """The counter a failed sign-in with ``presented`` goes to (the module says why)."""
    tried = key_hint(presented) if looks_like_key(presented) else "token"
    return f"sign-in:{address_bucket(client_address).removeprefix('address:')}:{tried}"
