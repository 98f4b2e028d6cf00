"""What `h2s-checkout keys` prints: a new key alone on stdout, the list as a table or JSON."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime

import msgspec

from h2s_checkout.domain.access import CLI_PREFIX
from h2s_checkout.flows.api_keys import KeyView, NewKey


def shell_actor() -> str:
    """Who runs the command, as traces and logs name them."""
    try:
        return f"{CLI_PREFIX}{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (some containers)
        return CLI_PREFIX.rstrip(":")


def _when(value: datetime | None, empty: str = "-") -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else empty


def print_created(created: NewKey) -> None:
    view = created.view
    print(
        f"created {view.name} ({view.key_id}): scopes {', '.join(view.scopes)}, "
        f"expires {_when(view.expires_at, 'never')}. The key is shown this once; "
        "only its hash is kept.",
        file=sys.stderr,
    )
    print(created.key)


def print_keys(keys: list[KeyView], *, as_json: bool) -> None:
    if as_json:
        print(msgspec.json.encode(keys).decode())
        return
    header = ("key_id", "name", "scopes", "key", "created", "by", "expires", "last used", "revoked")
    rows = [header] + [
        (
            str(k.key_id),
            k.name,
            ",".join(k.scopes),
            k.key_hint + "…",
            _when(k.created_at),
            k.created_by,
            _when(k.expires_at, "never"),
            _when(k.last_used_at),
            f"{_when(k.revoked_at)} by {k.revoked_by}" if k.revoked_at else "-",
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
