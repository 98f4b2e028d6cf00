"""Outbound events: their types, the retry schedule, Standard Webhooks signatures, and the
addresses a subscriber's URL may point at. Pure code, no I/O (docs/events.md)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from h2s_checkout.domain.errors import InvalidRequest
from h2s_checkout.domain.ipv4_forms import parse_ipv4

# Event type = "order." + the order's new status; order.created announces a pending order
# once its customer has a pay link. The refund types are emitted by the refund flow.
ORDER_CREATED = "order.created"
ORDER_PAID = "order.paid"
ORDER_EXPIRED = "order.expired"
ORDER_CANCELLED = "order.cancelled"
ORDER_REFUND_PENDING = "order.refund_pending"
ORDER_REFUNDED = "order.refunded"
ORDER_REFUND_FAILED = "order.refund_failed"
# Pay on completion (H2S_CAPTURE=on_completion) and partial refunds.
ORDER_AUTHORIZED = "order.authorized"
JOB_COMPLETED = "job.completed"
ORDER_CAPTURED = "order.captured"
ORDER_REFUNDED_PARTIALLY = "order.refunded_partially"
ORDER_AUTHORIZATION_EXPIRED = "order.authorization_expired"
EVENT_TYPES = (
    ORDER_CREATED,
    ORDER_PAID,
    ORDER_EXPIRED,
    ORDER_CANCELLED,
    ORDER_REFUND_PENDING,
    ORDER_REFUNDED,
    ORDER_REFUND_FAILED,
    ORDER_AUTHORIZED,
    JOB_COMPLETED,
    ORDER_CAPTURED,
    ORDER_REFUNDED_PARTIALLY,
    ORDER_AUTHORIZATION_EXPIRED,
)
# The shop's catalog and service area changed (flows/catalog.py): a storefront refreshes
# its copy without polling. Their data is the item (and the previous one) or the area.
CATALOG_ITEM_CREATED = "catalog.item_created"
CATALOG_ITEM_UPDATED = "catalog.item_updated"
SERVICE_AREA_UPDATED = "service_area.updated"
CATALOG_EVENT_TYPES = (CATALOG_ITEM_CREATED, CATALOG_ITEM_UPDATED, SERVICE_AREA_UPDATED)
# What an endpoint may subscribe to.
SUBSCRIBABLE_TYPES = EVENT_TYPES + CATALOG_EVENT_TYPES
ALL_TYPES = "*"

# Standard Webhooks' recommended schedule: at once, then after each of these.
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
# Up to this share is added to each delay, so that receivers coming back from an outage
# are not met by every retry in the same second.
JITTER = 0.2
RESPONSE_BODY_KEPT = 500
SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix, not a secret)
_SECRET_BYTES = 24  # Standard Webhooks: 24 to 64 bytes; 24 encode without padding
MAX_URL_CHARS = 2048


def retry_delay(tries: int, jitter: float) -> timedelta | None:
    """The wait after the ``tries``-th failed attempt of a schedule; None once it is spent.

    ``jitter`` in [0, 1) (a random draw) stretches the delay by up to ``JITTER``.
    """
    if tries < 1 or tries > len(RETRY_DELAYS):
        return None
    return RETRY_DELAYS[tries - 1] * (1 + JITTER * jitter)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key in a ``whsec_`` secret; ValueError when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a signing secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("a signing secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a signing secret holds 24 to 64 bytes")
    return key


def signature_header(
    signing_secrets: Iterable[str], message_id: str, timestamp: int, body: bytes
) -> str:
    """``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` for
    each secret, space-separated (two during a rotation's overlap)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(secret_key(s), signed, hashlib.sha256)).decode()
        for s in signing_secrets
    )


# -- where a subscriber may point -------------------------------------------------------

# Cloud metadata services answer on these whatever the network; never a subscriber.
_METADATA_ADDRESSES = (
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
)
_METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_address(host: str) -> Address | None:
    """The address a URL's host names when it is an IP literal in any form a resolver
    takes (``127.1``, ``2130706433``, ``0x7f.1``: domain/ipv4_forms.py), else None."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return parse_ipv4(host)


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_refusal(address: Address, *, allow_private: bool) -> str | None:
    """Why a subscriber may not be reached at ``address``; None when it may."""
    address = _unmapped(address)
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast or address.is_unspecified:
        return "not a unicast address"
    if address.is_loopback or address.is_private:
        if allow_private:
            return None
        return "a private or loopback address (allowed only with H2S_EVENTS_ALLOW_PRIVATE=true)"
    if address.is_reserved:
        return "a reserved address"
    if not allow_private and not address.is_global:
        return "not a public address (allowed only with H2S_EVENTS_ALLOW_PRIVATE=true)"
    return None


def _is_local_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


@dataclass(frozen=True, slots=True)
class ReservedTarget:
    """A host and port events are never sent to, whatever H2S_EVENTS_ALLOW_PRIVATE says:
    this service itself, its payment provider (an event posted to the emulator's admin
    API once paid an order)."""

    host: str  # lower-case, as urlsplit gives it: a name or an address
    port: int
    what: str  # "this service's own address", ...


@dataclass(frozen=True, slots=True)
class ReservedTargets:
    """The reserved targets, and this machine's own addresses: a target on one of them
    (or on loopback, or bound to every interface) is reached at any of them."""

    targets: tuple[ReservedTarget, ...] = ()
    local_addresses: frozenset[Address] = frozenset()

    def refusal(self, host: str, address: Address | None, port: int) -> str | None:
        """What ``host`` (its ``address`` when it is a literal) at ``port`` is, when it is
        a reserved target; None when it is none."""
        host = host.lower().rstrip(".")
        address = _unmapped(address) if address is not None else None
        for target in self.targets:
            if target.port != port:
                continue
            target_address = host_address(target.host)
            if host == target.host or (address is not None and address == target_address):
                return target.what
            if self._is_local(host, address) and self._is_local(target.host, target_address):
                return target.what
        return None

    def named_hosts(self) -> frozenset[str]:
        """Targets named by a name that DNS answers for (not localhost, not a literal):
        what a delivery resolves to is compared with what these resolve to."""
        return frozenset(
            t.host
            for t in self.targets
            if host_address(t.host) is None and not _is_local_name(t.host)
        )

    def _is_local(self, host: str, address: Address | None) -> bool:
        if _is_local_name(host):
            return True
        if address is None:
            return False
        address = _unmapped(address)
        return address.is_loopback or address.is_unspecified or address in self.local_addresses


def reserved_target(url: str, what: str) -> ReservedTarget | None:
    """``url``'s host and port as a reserved target; None when it has no host."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    return ReservedTarget(host, port, what) if host else None


OWN_ADDRESS = "this service's own address"
PROVIDER_ADDRESS = "the payment provider's address"


def service_targets(
    *, host: str, port: int, public_base_url: str, provider_base_url: str | None
) -> tuple[ReservedTarget, ...]:
    """The service's own address (where it listens, where the public reaches it) and its
    payment provider's (STRIPE_API_BASE, the embedded emulator)."""
    found = [ReservedTarget(host.lower().strip("[]"), port, OWN_ADDRESS)]
    for url, what in ((public_base_url, OWN_ADDRESS), (provider_base_url, PROVIDER_ADDRESS)):
        target = reserved_target(url, what) if url else None
        if target is not None:
            found.append(target)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class SubscriberUrl:
    url: str
    host: str
    port: int
    address: Address | None  # the host when it is an IP literal


def check_url(
    url: str, *, allow_private: bool, reserved: ReservedTargets | None = None
) -> SubscriberUrl:
    """A subscriber's URL as far as it can be judged without DNS; InvalidRequest if not.

    A host name is resolved and judged where it is used (registration and every
    connection); an IP literal, in any form a resolver takes, is judged here, and so is
    a host and port that is one of the ``reserved`` targets.
    """
    if not url or len(url) > MAX_URL_CHARS or any(c <= " " or c == "\x7f" for c in url):
        raise InvalidRequest(f"url must be an http(s) URL of at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidRequest("url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest("url must start with http:// or https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidRequest("url must not carry credentials (user:password@)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidRequest("url has no host")
    if host in _METADATA_NAMES:
        raise InvalidRequest("url points at a cloud metadata service")
    literal = host_address(host)
    address = literal
    if address is None and _is_local_name(host):
        address = ipaddress.ip_address("127.0.0.1")
    port = port or (443 if parts.scheme == "https" else 80)
    # First: whatever H2S_EVENTS_ALLOW_PRIVATE says, and the most telling reason.
    what = reserved.refusal(host, address, port) if reserved is not None else None
    if what is not None:
        raise InvalidRequest(f"url points at {what}: events are never sent there")
    if address is not None:
        refusal = address_refusal(address, allow_private=allow_private)
        if refusal is not None:
            raise InvalidRequest(f"url points at {refusal}")
        if literal is not None and literal.version == 4 and host != str(literal):
            # HTTP clients disagree on these (aiohttp refuses some, getaddrinfo reads them
            # all): one address, written one way, is what gets judged and dialled.
            raise InvalidRequest(f"url's host {host} is the IPv4 address {address}: write it so")
    return SubscriberUrl(url=url, host=host, port=port, address=address)
