"""`h2s-checkout keys create | list | revoke`: API keys from a shell, straight on the
database, recorded as `cli:<user>`; a new key alone on stdout, the list as a table or JSON."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import datetime

import msgspec

from h2s_checkout.domain.access import CLI_PREFIX
from h2s_checkout.domain.errors import CheckoutError
from h2s_checkout.embedded_stack import embedded_runtime
from h2s_checkout.flows import api_keys
from h2s_checkout.flows.api_keys import KeyView, NewKey
from h2s_checkout.settings import load_settings
from h2s_checkout.store.pool import create_pool
from h2s_checkout.store.traces import utcnow


def run(args: argparse.Namespace) -> int:
    """API keys from a shell, straight on the database; the actor is ``cli:<user>``."""
    settings = load_settings()

    async def on_database(dsn: str) -> int:
        pool = await create_pool(
            dsn, min_size=1, max_size=1, prepared_statements=settings.prepared_statements
        )
        try:
            if args.keys_command == "create":
                created = await api_keys.create_key(
                    pool,
                    name=args.name,
                    scopes=args.scope,
                    expires_at=args.expires_at,
                    actor=shell_actor(),
                    now=utcnow(),
                )
                print_created(created)
            elif args.keys_command == "list":
                print_keys(await api_keys.list_keys(pool), as_json=args.json)
            else:
                view = await api_keys.revoke_key(
                    pool, None, args.key_id, actor=shell_actor(), now=utcnow()
                )
                print(f"revoked {view.name} ({view.key_id}) at {view.revoked_at:%Y-%m-%d %H:%M}")
            return 0
        finally:
            await pool.close()

    with embedded_runtime(settings, start_emulator=False) as runtime:
        try:
            return asyncio.run(on_database(runtime.settings.database_url or ""))
        except CheckoutError as exc:
            print(f"h2s-checkout keys: {exc.message}", file=sys.stderr)
            return 1


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
