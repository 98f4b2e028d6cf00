"""`h2s-checkout doctor` on a live database: run the checks, print a table or JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import asyncpg

from h2s_checkout.bootstrap import build_gateway
from h2s_checkout.embedded_stack import check_pooler, provider_settings
from h2s_checkout.flows.doctor import (
    DATABASE_CONCURRENCY,
    CheckResult,
    DoctorOptions,
    any_failing,
    run_checks,
)
from h2s_checkout.payments.port import PaymentGateway
from h2s_checkout.settings import Settings, load_settings
from h2s_checkout.store.embedded import EmbeddedPostgres
from h2s_checkout.store.pool import UNAVAILABLE_ERRORS, create_pool

# Exit codes: 0 nothing found, 1 something found (or a check could not run), 2 no database.
CLEAN, FOUND, UNUSABLE = 0, 1, 2


def render_table(results: list[CheckResult]) -> str:
    """One line per check: name, count (or skipped/error), meaning; examples under it."""
    width = max(len(r.name) for r in results)
    lines = [f"{'check':<{width}}  {'count':>7}  meaning"]
    for r in results:
        shown = str(r.count) if r.status in ("ok", "problem") else r.status
        meaning = r.meaning
        if r.skipped:
            meaning += f" (skipped: {r.skipped})"
        lines.append(f"{r.name:<{width}}  {shown:>7}  {meaning}")
        if r.error:
            lines.append(f"{'':<{width}}  {'':>7}  error: {r.error}")
        if r.count and r.examples:
            lines.append(f"{'':<{width}}  {'':>7}  e.g. {', '.join(r.examples)}")
    found = [r for r in results if r.failing]
    lines.append("")
    lines.append(
        f"doctor: {len(found)} of {len(results)} checks found something"
        if found
        else "doctor: nothing wrong found"
    )
    return "\n".join(lines)


def report(results: list[CheckResult], options: DoctorOptions) -> dict[str, Any]:
    return {
        "ok": not any_failing(results),
        "since_hours": options.since_hours,
        "stuck_minutes": options.stuck_minutes,
        "checks": [r.to_dict() for r in results],
    }


async def run_doctor(
    dsn: str,
    provider: Settings | None,
    options: DoctorOptions,
    *,
    as_json: bool,
    provider_unreachable: str | None = None,
    prepared_statements: bool = True,
) -> int:
    """Print the report; the exit code. ``provider`` None: the provider's checks fail with
    ``provider_unreachable``, the reason it cannot be checked (or are skipped without one);
    ``prepared_statements`` False when ``dsn`` leads to a transaction pooler."""
    try:
        pool = await create_pool(
            dsn,
            min_size=1,
            max_size=DATABASE_CONCURRENCY,
            prepared_statements=prepared_statements,
        )
    except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
        print(f"h2s-checkout doctor: cannot reach the database: {exc}", file=sys.stderr)
        return UNUSABLE
    gateway: PaymentGateway | None = build_gateway(provider) if provider else None
    try:
        results = await run_checks(
            pool,
            gateway,
            options,
            concurrency=DATABASE_CONCURRENCY,
            provider_unreachable=provider_unreachable,
        )
    except asyncpg.UndefinedTableError as exc:
        print(
            f"h2s-checkout doctor: {exc}: run `h2s-checkout migrate` on this database first",
            file=sys.stderr,
        )
        return UNUSABLE
    finally:
        if gateway is not None:
            await gateway.close()
        await pool.close()
    if as_json:
        print(json.dumps(report(results, options), indent=2))
    else:
        print(render_table(results))
    if gateway is None and provider_unreachable is not None:
        print(
            f"h2s-checkout doctor: the payment provider's checks did not run: "
            f"{provider_unreachable}",
            file=sys.stderr,
        )
    return FOUND if any_failing(results) else CLEAN


def run(args: argparse.Namespace) -> int:
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
