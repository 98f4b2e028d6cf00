"""`h2s-checkout catalog list | add | set | deactivate | history` and `h2s-checkout
service-area show | set`: the shop's catalog and service area from a shell, through the
same flows as the API (flows/catalog.py: If-Match, history, events), recorded as
`cli:<user>` as `keys` is. A price is given in the currency's units (`--price 159.00`).

A change is made against the version the command reads first (or `--if-match ETAG`, the
version you looked at): one made by someone else in between is refused, not overwritten.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal

import msgspec

from h2s_checkout.cli.keys import shell_actor
from h2s_checkout.domain.cart import CatalogItem
from h2s_checkout.domain.catalog import ItemChange, fields_of, item_etag
from h2s_checkout.domain.errors import CheckoutError
from h2s_checkout.embedded_stack import embedded_runtime
from h2s_checkout.flows.catalog import AreaView, CatalogAdmin, Change
from h2s_checkout.settings import load_settings
from h2s_checkout.store.pool import create_pool


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    name = "catalog" if args.command == "catalog" else "service-area"

    async def on_database(dsn: str) -> int:
        pool = await create_pool(
            dsn, min_size=1, max_size=1, prepared_statements=settings.prepared_statements
        )
        try:
            admin = CatalogAdmin(pool)
            if args.command == "catalog":
                await _CATALOG[args.catalog_command](admin, args)
            else:
                await _AREA[args.area_command](admin, args)
            return 0
        finally:
            await pool.close()

    with embedded_runtime(settings, start_emulator=False) as runtime:
        try:
            return asyncio.run(on_database(runtime.settings.database_url or ""))
        except CheckoutError as exc:
            print(f"h2s-checkout {name}: {exc.message} ({exc.code})", file=sys.stderr)
            return 1


def _money(item: CatalogItem) -> str:
    return f"{Decimal(item.unit_amount_cents) / 100:.2f} {item.currency}"


def print_items(items: list[CatalogItem], *, as_json: bool) -> None:
    if as_json:
        print(msgspec.json.encode([fields_of(i) for i in items]).decode())
        return
    print(f"{'sku':<20} {'price':>14} {'max':>4} {'v':>3} {'state':<8} name")
    for i in items:
        state = "active" if i.active else "inactive"
        print(f"{i.sku:<20} {_money(i):>14} {i.max_quantity:>4} {i.version:>3} {state:<8} {i.name}")


def print_item(verb: str, item: CatalogItem) -> None:
    state = "" if item.active else " (inactive)"
    print(
        f"{verb} {item.sku}: {_money(item)}, version {item.version}{state}, ETag {item_etag(item)}"
    )


def print_history(changes: list[Change], *, as_json: bool = False) -> None:
    if as_json:
        print(msgspec.json.encode(changes).decode())
        return
    for c in changes:
        before, after = c.before or {}, c.after
        fields = sorted(k for k in after if before.get(k) != after.get(k) and k != "version")
        what = ", ".join(f"{k}: {before.get(k, '-')} -> {after[k]}" for k in fields)
        print(f"{c.at:%Y-%m-%d %H:%M:%S} v{c.version} {c.action:<11} by {c.actor}: {what}")


def print_area(view: AreaView, *, as_json: bool = False) -> None:
    if as_json:
        print(
            msgspec.json.encode(
                {"areas": view.area.as_json(), "version": view.area.version}
            ).decode()
        )
        return
    if not view.area.areas:
        print(f"everywhere (version {view.area.version})")
    for country, prefixes in view.area.areas:
        print(f"{country}: {', '.join(prefixes)}")
    if view.updated_by:
        print(
            f"version {view.area.version}, set by {view.updated_by} "
            f"at {view.updated_at:%Y-%m-%d %H:%M}"
        )


async def _list(admin: CatalogAdmin, args: argparse.Namespace) -> None:
    print_items(await admin.list_items(include_inactive=args.all), as_json=args.json)


async def _add(admin: CatalogAdmin, args: argparse.Namespace) -> None:
    item = await admin.create_item(
        CatalogItem(
            sku=args.sku,
            name=args.name,
            description=args.description,
            unit_amount_cents=args.price,
            currency=args.currency,
            max_quantity=args.max_quantity,
        ),
        actor=shell_actor(),
    )
    print_item("added", item)


async def _change(admin: CatalogAdmin, args: argparse.Namespace, change: ItemChange) -> None:
    if_match = args.if_match or item_etag(await admin.get_item(args.sku))
    item = await admin.change_item(args.sku, change, if_match=if_match, actor=shell_actor())
    print_item("changed", item)


async def _set(admin: CatalogAdmin, args: argparse.Namespace) -> None:
    await _change(
        admin,
        args,
        ItemChange(
            name=args.name,
            description=args.description,
            unit_amount_cents=args.price,
            currency=args.currency,
            max_quantity=args.max_quantity,
            active=args.active,
        ),
    )


async def _deactivate(admin: CatalogAdmin, args: argparse.Namespace) -> None:
    await _change(admin, args, ItemChange(active=False))


async def _history(admin: CatalogAdmin, args: argparse.Namespace) -> None:
    print_history(await admin.item_history(args.sku), as_json=args.json)


async def _show_area(admin: CatalogAdmin, args: argparse.Namespace) -> None:
    print_area(await admin.service_area(), as_json=args.json)


async def _set_area(admin: CatalogAdmin, args: argparse.Namespace) -> None:
    if bool(args.areas) == bool(args.everywhere):
        raise SystemExit("h2s-checkout service-area set: give areas, or --everywhere")
    if_match = args.if_match or (await admin.service_area()).area.etag
    view = await admin.set_service_area(
        [] if args.everywhere else args.areas, if_match=if_match, actor=shell_actor()
    )
    print_area(view)


async def _area_history(admin: CatalogAdmin, args: argparse.Namespace) -> None:
    print_history(await admin.area_history())


_Step = Callable[[CatalogAdmin, argparse.Namespace], Awaitable[None]]
_CATALOG: dict[str, _Step] = {
    "list": _list,
    "add": _add,
    "set": _set,
    "deactivate": _deactivate,
    "history": _history,
}
_AREA: dict[str, _Step] = {"show": _show_area, "set": _set_area, "history": _area_history}
