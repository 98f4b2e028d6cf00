"""Identifiers and keys derived from a checkout: order id, derived key, Stripe key."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

import msgspec

# What order_id_for makes, in any case: the API checks order ids against it and the
# OpenAPI schema shows it (an ECMA-262 regex too, so no inline flags).
ORDER_ID_PATTERN = r"^[Oo][Rr][Dd]-[0-9A-Fa-f]{16}$"


_MS_BITS = 48
_RANDOM_B_BITS = 62
_MINUTE_MS = 60_000


def new_checkout_id(now_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Time-ordered on purpose: the indexes keyed by the checkout id, and by the order and
    job ids made from it, take each new row on the few pages holding this minute's keys,
    which stay in memory, instead of on a random page of a large index (a read and a full
    page image in the WAL per index, per insert, once the tables hold a million rows).
    """
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits: 12 for rand_a, 62 for rand_b
    value = (
        (ms & ((1 << _MS_BITS) - 1)) << 80
        | 0x7 << 76
        | (rand >> _RANDOM_B_BITS & 0xFFF) << 64
        | 0b10 << 62
        | rand & ((1 << _RANDOM_B_BITS) - 1)
    )
    return uuid.UUID(int=value)


def _unix_ms(checkout_id: uuid.UUID) -> int:
    return checkout_id.int >> 80


def order_id_for(checkout_id: uuid.UUID) -> str:
    """A readable order id that is a pure function of the checkout id: ORD- and 16 hex
    digits.

    For a UUIDv7 checkout id: 6 digits of the minute it was made (so order ids sort by
    time too, and the orders' primary key takes new rows on hot pages) and 10 digits (40
    bits) of its random part; two orders can only collide within the same minute. For an
    older, random (v4) checkout id: its first 16 hex digits, as before.
    """
    if checkout_id.version == 7:
        minute = (_unix_ms(checkout_id) // _MINUTE_MS) & 0xFFFFFF
        return f"ORD-{minute:06X}{checkout_id.int & 0xFF_FFFF_FFFF:010X}"
    return "ORD-" + checkout_id.hex[:16].upper()


def job_id_for(checkout_id: uuid.UUID) -> uuid.UUID:
    """The dispatch job id, also a pure function of the checkout id.

    A name-based hash of the checkout id; for a UUIDv7 checkout id, its first 48 bits are
    the checkout's milliseconds (a version 8 UUID), so jobs too are keyed in time order.
    """
    hashed = uuid.uuid5(checkout_id, "dispatch-job")
    if checkout_id.version != 7:
        return hashed
    value = (_unix_ms(checkout_id) << 80) | (hashed.int & ((1 << 80) - 1))
    value = (value & ~(0xF << 76)) | (0x8 << 76)  # version 8: custom, RFC 9562
    return uuid.UUID(int=value)


def derived_key(email_normalized: str, fingerprint: str, address_normalized: str) -> str:
    """The key the service derives when the client sends no Idempotency-Key.

    It covers what makes a booking distinct: who (the email), what (the cart) and where
    (the service address): the same cart at a landlord's second home is a second booking.
    The migration 20261127000001 computes the same value in SQL; keep them in step.
    """
    canonical = f"{email_normalized}|{fingerprint}|{address_normalized}"
    return hashlib.sha256(canonical.encode()).hexdigest()


def stripe_idempotency_key(checkout_id: uuid.UUID) -> str:
    """Stripe's key comes from our own row, never from the client's key."""
    return f"h2s-checkout-{checkout_id}-session"


# Keys sorted, no spaces, UTF-8 unescaped: byte for byte what
# ``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` wrote when
# the digests already stored were made (tests/unit/test_keys.py holds the two together),
# at a tenth of its cost on every checkout and replay.
_canonical_json = msgspec.json.Encoder(order="sorted")


def request_digest(body: object) -> str:
    """A digest of the whole request body, independent of JSON key order."""
    return hashlib.sha256(_canonical_json.encode(body)).hexdigest()
