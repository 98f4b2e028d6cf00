"""`h2s-checkout`: every command's arguments in one parser, and the dispatch to the
command's own module (cli/<command>.py, its `run(args)`), imported only once it is the one
chosen, so that each command loads what it needs and nothing else."""

from __future__ import annotations

import argparse
import importlib
import sys
import uuid
from collections.abc import Callable
from datetime import datetime

from h2s_checkout.observability.logging import configure_logging
from h2s_checkout.settings import SettingsError, load_settings

DESCRIPTION = "Command line: serve, migrate, smoke, keys and the operators' commands."


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _aware_datetime(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {raw!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2027-01-31T00:00:00Z")
    return value


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a key id: {raw!r}") from None


def _command(module: str) -> Callable[[argparse.Namespace], int]:
    """The `run` of h2s_checkout.cli.<module>, imported when called."""

    def run(args: argparse.Namespace) -> int:
        found: int = importlib.import_module(f"h2s_checkout.cli.{module}").run(args)
        return found

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="h2s-checkout", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="run the API (embedded PostgreSQL and emulator by default)"
    )
    serve.add_argument("--port", type=int, default=None, help="overrides PORT")
    serve.add_argument("--workers", type=int, default=1, help="granian worker processes")
    serve.set_defaults(func=_command("serve"))

    migrate = sub.add_parser("migrate", help="apply db/migrations to DATABASE_URL (or embedded)")
    migrate.set_defaults(func=_command("migrate"))

    reconcile = sub.add_parser(
        "reconcile", help="one pass: finish or clean up stuck checkouts, settle silent sessions"
    )
    reconcile.set_defaults(func=_command("reconcile"))

    doctor = sub.add_parser(
        "doctor",
        help="count orders without jobs, stuck checkouts, orphan sessions; non-zero if any",
    )
    doctor.add_argument(
        "--since-hours", type=_positive_int, default=48, help="window for orders and sessions"
    )
    doctor.add_argument(
        "--stuck-minutes", type=_positive_int, default=10, help="idle time that counts as stuck"
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(func=_command("doctor"))

    trace = sub.add_parser("trace", help="print a checkout's timeline (trace id or order id)")
    trace.add_argument("ref", help="checkout trace id or order id (ORD-...)")
    trace.set_defaults(func=_command("trace"))

    keys = sub.add_parser("keys", help="API keys with scopes: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser(
        "create", help="make a key; the key alone is printed on stdout, once"
    )
    create.add_argument("--name", required=True, help="who uses it; traces show it as the actor")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=["read", "operate", "admin", "checkout", "dispatch"],
        help="repeat for each scope the key needs",
    )
    create.add_argument(
        "--expires-at",
        type=_aware_datetime,
        default=None,
        help="ISO 8601 with a zone, e.g. 2027-01-31T00:00:00Z (default: never)",
    )
    listing = keys_sub.add_parser("list", help="every key, never the key itself")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    revoke = keys_sub.add_parser("revoke", help="refuse a key from now on and end its sessions")
    revoke.add_argument("key_id", type=_uuid, help="the key's id (from `keys list`)")
    keys.set_defaults(func=_command("keys"))

    reap = sub.add_parser("reap-keys", help="forget client Idempotency-Keys past retention")
    reap.set_defaults(func=_command("reap_keys"))

    listen = sub.add_parser(
        "listen", help="a local event receiver: verify each signed event and print it"
    )
    listen.add_argument("--port", type=int, default=9000)
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument(
        "--secret",
        action="append",
        required=True,
        help="the endpoint's whsec_ secret (repeat it for the old one during a rotation)",
    )
    listen.add_argument("--json", action="store_true", help="print each event as a JSON line")
    listen.set_defaults(func=_command("listen"))

    smoke = sub.add_parser("smoke", help="make N checkouts and verify each end to end")
    smoke.add_argument(
        "base_url",
        nargs="?",
        default=None,
        help="a live deployment; without it the embedded stack is started",
    )
    smoke.add_argument("-n", "--count", type=int, default=10)
    smoke.add_argument("--token", default=None, help="admin token (default: $H2S_ADMIN_TOKEN)")
    smoke.set_defaults(func=_command("smoke"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"h2s-checkout: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from h2s_checkout.embedded_stack import StartupError

    try:
        result: int = args.func(args)
    except StartupError as exc:
        print(f"h2s-checkout {args.command}: {exc}", file=sys.stderr)
        return 2
    return result
