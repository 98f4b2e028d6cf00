"""Who may drive the emulator: its admin token, and the hosted page's per-session pay token.

The admin API (`/_emulator/*`) completes sessions, injects faults and rewrites the
webhook endpoint: it moves money as far as the service can tell. Anything that can send
an HTTP request from this machine (a subscriber URL the service posts to, a page in a
browser) could reach it, so every admin route but `/_emulator/health` needs the token
made when the emulator starts.

The hosted page's Pay button is the customer's and needs no admin token; its form carries
a pay token derived from the admin token and the session id, shown only on the page
itself. A request that only POSTs (the service's event deliveries, a form on another
site) cannot know it, so it cannot pay a session.
"""

import hashlib
import hmac
import secrets

ADMIN_TOKEN_PREFIX = "emu_admin_"  # noqa: S105 - a prefix


def new_admin_token() -> str:
    # Hex: safe in a shell, an argument and a header, never taken for an option.
    return ADMIN_TOKEN_PREFIX + secrets.token_hex(24)


def presented_token(headers: dict[str, str]) -> str | None:
    """The bearer token of `Authorization`; None when there is none."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def is_admin(headers: dict[str, str], admin_token: str) -> bool:
    presented = presented_token(headers)
    return presented is not None and hmac.compare_digest(
        presented.encode("utf-8", "replace"), admin_token.encode()
    )


def pay_token(admin_token: str, session_id: str) -> str:
    """The hidden field of a session's hosted form: stable across restarts of an emulator
    that keeps its admin token, so a page loaded before one can still be paid after."""
    digest = hmac.new(admin_token.encode(), f"pay:{session_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def pay_token_matches(admin_token: str, session_id: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(
        given.encode("utf-8", "replace"), pay_token(admin_token, session_id).encode()
    )
