"""Command line: serve, migrate, smoke, keys and the operators' commands."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from datetime import datetime

from h2s_checkout.logging import configure_logging, get_logger
from h2s_checkout.settings import Settings, SettingsError, load_settings

log = get_logger("h2s_checkout.cli")


def _serve(args: argparse.Namespace) -> int:
    from h2s_checkout.runtime import StartupError

    settings = load_settings()
    if args.port is not None:
        settings = settings.with_overrides(port=args.port)
    try:
        return _serve_embedded(settings, args.workers)
    except StartupError as exc:
        print(f"h2s-checkout serve: {exc}", file=sys.stderr)
        return 2


def _serve_embedded(settings: Settings, workers: int) -> int:
    from granian import Granian
    from granian.constants import Interfaces

    from h2s_checkout.runtime import embedded_runtime, export_environment

    with embedded_runtime(settings) as runtime:
        export_environment(runtime.settings)
        log.info(
            "service.listening",
            url=f"http://{runtime.settings.host}:{runtime.settings.port}",
            database="embedded" if runtime.embedded_postgres else "external",
            payments=runtime.settings.payment_mode,
            admin_token_file=str(settings.data_dir / "admin-token")
            if runtime.embedded_postgres and not settings.admin_token
            else None,
        )
        Granian(
            "h2s_checkout.app:create_app_from_env",
            address=runtime.settings.host,
            port=runtime.settings.port,
            interface=Interfaces.ASGI,
            workers=workers,
            factory=True,
            log_access=False,
        ).serve()
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from h2s_checkout.runtime import check_pooler, migrate_database
    from h2s_checkout.store.embedded import EmbeddedPostgres
    from h2s_checkout.store.migrate import apply_migrations

    settings = load_settings()
    if settings.database_url is not None:
        check_pooler(settings)
        migrate_database(settings)
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        pg = EmbeddedPostgres(settings.data_dir / "postgres")
        try:
            apply_migrations(pg.start())
        finally:
            if pg.launched:  # a database a running `serve` owns stays up
                pg.stop()
    log.info("migrations.applied", database="external" if settings.database_url else "embedded")
    return 0


def _reap_keys(_: argparse.Namespace) -> int:
    import asyncio
    from datetime import timedelta

    from h2s_checkout.flows.reaper import reap_keys
    from h2s_checkout.runtime import embedded_runtime
    from h2s_checkout.store.pool import create_pool

    settings = load_settings()

    async def once(dsn: str) -> int:
        pool = await create_pool(
            dsn, min_size=1, max_size=1, prepared_statements=settings.prepared_statements
        )
        try:
            return await reap_keys(pool, timedelta(hours=settings.key_retention_hours))
        finally:
            await pool.close()

    with embedded_runtime(settings, start_emulator=False) as runtime:
        reaped = asyncio.run(once(runtime.settings.database_url or ""))
    print(f"reaped {reaped} idempotency keys older than {settings.key_retention_hours} h")
    return 0


def _reconcile(_: argparse.Namespace) -> int:
    import asyncio

    from h2s_checkout.runtime import embedded_runtime, provider_settings
    from h2s_checkout.services import open_services

    settings = load_settings()

    async def once(resolved: Settings) -> str:
        async with open_services(resolved) as services:
            return str(await services.reconciler.run_once())

    with embedded_runtime(settings, start_emulator=False) as runtime:
        report = asyncio.run(once(provider_settings(runtime.settings)))
    print(f"reconcile: {report}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    """API keys from a shell, straight on the database; the actor is ``cli:<user>``."""
    import asyncio

    from h2s_checkout.cli.keys import print_created, print_keys, shell_actor
    from h2s_checkout.flows import api_keys
    from h2s_checkout.runtime import embedded_runtime
    from h2s_checkout.store.pool import create_pool
    from h2s_checkout.store.traces import utcnow

    settings = load_settings()

    async def run(dsn: str) -> int:
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

    from h2s_checkout.domain.errors import CheckoutError

    with embedded_runtime(settings, start_emulator=False) as runtime:
        try:
            return asyncio.run(run(runtime.settings.database_url or ""))
        except CheckoutError as exc:
            print(f"h2s-checkout keys: {exc.message}", file=sys.stderr)
            return 1


def _doctor(args: argparse.Namespace) -> int:
    import asyncio

    from h2s_checkout.cli.doctor import UNUSABLE, run_doctor
    from h2s_checkout.flows.doctor import DoctorOptions
    from h2s_checkout.runtime import check_pooler, provider_settings
    from h2s_checkout.store.embedded import EmbeddedPostgres

    settings = load_settings()
    unreachable: str | None = None
    try:
        provider: Settings | None = provider_settings(settings)
    except RuntimeError as exc:
        # There is always a provider to check (the embedded stack's emulator when nothing
        # is configured): not finding it fails its checks, never skips them.
        provider, unreachable = None, str(exc)
    options = DoctorOptions(since_hours=args.since_hours, stuck_minutes=args.stuck_minutes)

    def doctor(dsn: str, *, prepared_statements: bool = True) -> int:
        return asyncio.run(
            run_doctor(
                dsn,
                provider,
                options,
                as_json=args.json,
                provider_unreachable=unreachable,
                prepared_statements=prepared_statements,
            )
        )

    if settings.database_url is not None:
        check_pooler(settings)
        # The server itself when there is a direct URL: the checks are long reads that
        # need not hold a pooled server connection.
        direct = settings.database_direct_url
        return doctor(
            direct or settings.database_url,
            prepared_statements=direct is not None or settings.prepared_statements,
        )
    if not (settings.data_dir / "postgres").exists():
        print(
            f"h2s-checkout doctor: no database: set DATABASE_URL or run `h2s-checkout "
            f"serve` (embedded under {settings.data_dir})",
            file=sys.stderr,
        )
        return UNUSABLE
    pg = EmbeddedPostgres(settings.data_dir / "postgres")
    try:
        return doctor(pg.start())
    finally:
        if pg.launched:  # a database a running `serve` owns stays up
            pg.stop()


def _trace(args: argparse.Namespace) -> int:
    import asyncio

    from h2s_checkout.cli.trace import render
    from h2s_checkout.domain.errors import NotFound
    from h2s_checkout.flows.inspect_checkout import timeline
    from h2s_checkout.runtime import embedded_runtime
    from h2s_checkout.store.pool import create_pool

    settings = load_settings()

    async def read(dsn: str) -> dict:
        pool = await create_pool(
            dsn, min_size=1, max_size=1, prepared_statements=settings.prepared_statements
        )
        try:
            return await timeline(pool, args.ref)
        finally:
            await pool.close()

    with embedded_runtime(settings, migrate=False, start_emulator=False) as runtime:
        try:
            found = asyncio.run(read(runtime.settings.database_url or ""))
        except NotFound:
            print(f"no checkout {args.ref!r}", file=sys.stderr)
            return 1
    print(render(found))
    return 0


def _listen(args: argparse.Namespace) -> int:
    from h2s_checkout.cli.listen import run

    return run(host=args.host, port=args.port, secrets=args.secret, as_json=args.json)


def _smoke(args: argparse.Namespace) -> int:
    from h2s_checkout.cli.smoke import run_smoke

    return run_smoke(
        base_url=args.base_url,
        count=args.count,
        admin_token=args.token or os.environ.get("H2S_ADMIN_TOKEN"),
        database_url=os.environ.get("DATABASE_URL") if args.base_url else None,
    )


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="h2s-checkout", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="run the API (embedded PostgreSQL and emulator by default)"
    )
    serve.add_argument("--port", type=int, default=None, help="overrides PORT")
    serve.add_argument("--workers", type=int, default=1, help="granian worker processes")
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="apply db/migrations to DATABASE_URL (or embedded)")
    migrate.set_defaults(func=_migrate)

    reconcile = sub.add_parser(
        "reconcile", help="one pass: finish or clean up stuck checkouts, settle silent sessions"
    )
    reconcile.set_defaults(func=_reconcile)

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
    doctor.set_defaults(func=_doctor)

    trace = sub.add_parser("trace", help="print a checkout's timeline (trace id or order id)")
    trace.add_argument("ref", help="checkout trace id or order id (ORD-...)")
    trace.set_defaults(func=_trace)

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
        choices=["read", "operate", "admin", "checkout"],
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
    keys.set_defaults(func=_keys)

    reap = sub.add_parser("reap-keys", help="forget client Idempotency-Keys past retention")
    reap.set_defaults(func=_reap_keys)

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
    listen.set_defaults(func=_listen)

    smoke = sub.add_parser("smoke", help="make N checkouts and verify each end to end")
    smoke.add_argument(
        "base_url",
        nargs="?",
        default=None,
        help="a live deployment; without it the embedded stack is started",
    )
    smoke.add_argument("-n", "--count", type=int, default=10)
    smoke.add_argument("--token", default=None, help="admin token (default: $H2S_ADMIN_TOKEN)")
    smoke.set_defaults(func=_smoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"h2s-checkout: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from h2s_checkout.runtime import StartupError

    try:
        result: int = args.func(args)
    except StartupError as exc:
        print(f"h2s-checkout {args.command}: {exc}", file=sys.stderr)
        return 2
    return result
