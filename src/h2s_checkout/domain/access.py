"""Who may do what: scopes, API keys and the principal a request acts as. Pure code.

A key is ``h2s_key_`` and 32 random bytes (URL-safe base64), shown once. Only its SHA-256
is kept: with 256 bits of randomness no one can guess a key whatever the hash costs, so a
slow password hash (bcrypt, scrypt, Argon2) would add tens of milliseconds to every
request and protect nothing; it exists to stretch the low entropy of passwords people
choose. A fast unsalted hash also lets a key be found by its hash in one index lookup.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from h2s_checkout.domain.errors import InvalidRequest, KeyNameReserved

KEY_PREFIX = "h2s_key_"
_KEY_BYTES = 32
_HINT_CHARS = len(KEY_PREFIX) + 4
# A key name is what traces and logs show as the actor: short, printable, no spaces.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


class Scope(StrEnum):
    """What a key may do. Scopes are independent: give a key each one it needs."""

    READ = "read"  # timelines, checkout views, the portal, the debug page
    OPERATE = "operate"  # cancel and refund, event endpoints and redelivery, reconcile
    ADMIN = "admin"  # API keys themselves
    # A storefront's own server calling POST /api/checkout for its customers: limited per
    # key and per email instead of per client address (all its calls come from one).
    CHECKOUT = "checkout"
    # Shop staff managing the catalog (services, prices) and the service area: neither
    # moves money nor makes keys.
    CATALOG = "catalog"
    # The dispatch system: completes jobs, which charges a held card (pay on completion).
    DISPATCH = "dispatch"


ALL_SCOPES = frozenset(Scope)
_SCOPE_NAMES = ", ".join(Scope)

# Actors that are not keys: the H2S_ADMIN_TOKEN, the service's own background work, and a
# shell's `h2s-checkout keys` (cli:<user>).
BOOTSTRAP = "bootstrap"
RECONCILER = "reconciler"
WEBHOOK = "webhook"
CLI_PREFIX = "cli:"
RESERVED_NAMES = frozenset({BOOTSTRAP, RECONCILER, WEBHOOK})
# A name is read in a trace beside "bootstrap" or "cli:ana": one that differs from a
# built-in actor only in case or punctuation ("Bootstrap", "bootstrap.", "web-hook") or
# starts as the shell's do ("cli", "cli.ana") would pass for it.
_PUNCTUATION = re.compile(r"[^a-z0-9]")
_RESERVED_SKELETONS = frozenset({*RESERVED_NAMES, "cli"})
_LIKE_CLI = re.compile(r"^cli(?![a-z0-9])")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a key (by its name) or the bootstrap token."""

    name: str
    scopes: frozenset[Scope]
    key_hash: bytes
    key_id: uuid.UUID | None = None
    expires_at: datetime | None = None

    @property
    def actor(self) -> str:
        """The name written into trace rows and log lines for what this principal does."""
        return self.name

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def key_hash(presented: str) -> bytes:
    """The SHA-256 a key is stored and looked up by (see the module's docstring)."""
    return hashlib.sha256(presented.encode()).digest()


def key_hint(key: str) -> str:
    """The first characters of a key, enough to tell keys apart in a list."""
    return key[:_HINT_CHARS]


def looks_like_key(presented: str) -> bool:
    return presented.startswith(KEY_PREFIX) and len(presented) <= 128


def key_name(raw: str) -> str:
    name = raw.strip()
    if not _NAME.match(name):
        raise InvalidRequest(
            "name must be 1 to 64 letters, digits or . _ @ + -, starting with a letter or digit"
        )
    if reads_as_built_in_actor(name):
        raise KeyNameReserved(
            f"{name!r} would read as one of the service's own actors (bootstrap, reconciler, "
            "webhook, cli:<user>) in traces; choose another name"
        )
    return name


def reads_as_built_in_actor(name: str) -> bool:
    lowered = name.lower()
    return (
        _PUNCTUATION.sub("", lowered) in _RESERVED_SKELETONS or _LIKE_CLI.match(lowered) is not None
    )


def scopes_from(raw: list[str]) -> frozenset[Scope]:
    if not raw:
        raise InvalidRequest(f"scopes must name at least one of {_SCOPE_NAMES}")
    try:
        return frozenset(Scope(s) for s in raw)
    except ValueError:
        raise InvalidRequest(f"scopes must be among {_SCOPE_NAMES}") from None
