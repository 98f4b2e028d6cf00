"""`python -m h2s_bench.events`: what outbound events cost a new checkout.

One server process (granian, one worker) on real PostgreSQL and the emulator, new
checkouts from 16 clients, in three phases, twice each in turn:

- ``before``: phase 3 as it was before events (the previous ``h2s_link_session``, put
  back for the phase);
- ``no subscriber``: the event row is written, nothing to deliver, no NOTIFY;
- ``one subscriber``: a receiver on 127.0.0.1 gets every event (NOTIFY, delivery loop);
- ``one subscriber, loop off``: the same writes and NOTIFY, but a server whose delivery
  loop is off (H2S_EVENTS_POLL_S=0): the outbox's cost on the checkout's path alone;
- ``one subscriber, loop off, no NOTIFY``: the same, with the function's NOTIFY taken
  out for the phase: what the NOTIFY's commit-time lock costs;
- ``one subscriber, 1 client``: the delivery lag when the worker is not saturated.

Phases run in turn; the second round runs ``before`` and ``no subscriber`` the other way
round, so that drift over the run does not favour one of them.

For each: answers per second, p50 and p99, round trips per checkout on the checkout's
path and, apart, the delivery loop's statements (pg_stat_statements), the mean time of
``h2s_link_session`` in PostgreSQL, and with a subscriber the delivery lag from the
outbox (event written -> first attempt sent, -> delivered). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from aiohttp import web

from h2s_bench import dbstats, load
from h2s_bench.stack import (
    BENCH_ADMIN_TOKEN,
    Database,
    EmulatorProcess,
    ServerProcess,
    free_port,
)
from h2s_checkout.store.migrate import apply_migrations, migrations_dir

SKUS = ("tv-mount", "smart-lock", "ceiling-fan")
_DELIVERY_TABLES = ("h2s_event_deliveries", "h2s_event_attempts", "pg_notify")

_LINK_TIME = """
select coalesce(sum(total_exec_time), 0)::float8 as t, coalesce(sum(calls), 0)::float8 as n
from pg_stat_statements where query like '%h2s_link_session%' and toplevel
"""

_LAG = """
select percentile_cont(array[0.5, 0.99]) within group (order by extract(epoch from
           a.started_at - e.created_at)) as first_attempt,
       (select percentile_cont(array[0.5, 0.99]) within group (order by extract(epoch from
            d2.delivered_at - e2.created_at))
        from h2s_event_deliveries d2 join h2s_events e2 on e2.event_id = d2.event_id
        where d2.status = 'delivered' and e2.created_at > $1) as delivered
from h2s_event_attempts a
join h2s_event_deliveries d on d.delivery_id = a.delivery_id
join h2s_events e on e.event_id = d.event_id
where a.attempt = 1 and e.created_at > $1
"""


@dataclass
class Phase:
    name: str
    rate: float
    p50_ms: float
    p99_ms: float
    checkout_trips: float
    delivery_statements: float
    link_mean_ms: float
    lag_first_ms: tuple[float, float] | None = None
    lag_delivered_ms: tuple[float, float] | None = None


def _previous_link_session() -> str:
    """The h2s_link_session before it emitted order.created (that migration's down)."""
    path = next(migrations_dir().glob("*_h2s_link_session_emits_order_created.sql"))
    return path.read_text().split("-- migrate:down", 1)[1]


async def _receiver(port: int) -> web.AppRunner:
    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/events", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _phase(name: str, dsn: str, url: str, run: str, duration_s: float, clients: int) -> Phase:
    conn = await asyncpg.connect(dsn)
    try:
        started_at = await conn.fetchval("select clock_timestamp()")
        link_before = await conn.fetchrow(_LINK_TIME)
        before = await dbstats.snapshot(dsn)
        outcome = await load.closed_loop(
            name,
            [url],
            load.new_checkouts(run, "".join(c for c in name if c.isalnum()), SKUS),
            clients=clients,
            duration_s=duration_s,
            max_requests=10**9,
            expect_status=201,
        )
        await asyncio.sleep(1.0)  # let the last deliveries land
        after = await dbstats.snapshot(dsn)
        trips = dbstats.delta(before, after, outcome.ok)
        delivery = [(q, c) for q, c in trips.by_statement if any(t in q for t in _DELIVERY_TABLES)]
        checkout_path = [(q, c) for q, c in trips.by_statement if (q, c) not in delivery]
        link_after = await conn.fetchrow(_LINK_TIME)
        lag = await conn.fetchrow(_LAG, started_at)
    finally:
        await conn.close()
    phase = Phase(
        name=name,
        rate=outcome.rate,
        p50_ms=outcome.pct(50),
        p99_ms=outcome.pct(99),
        checkout_trips=sum(c for _q, c in checkout_path),
        delivery_statements=sum(c for _q, c in delivery),
        link_mean_ms=float(link_after["t"] - link_before["t"])
        / max(float(link_after["n"] - link_before["n"]), 1.0),
    )
    if lag["first_attempt"] is not None:
        phase.lag_first_ms = tuple(v * 1000 for v in lag["first_attempt"])  # type: ignore[assignment]
    if lag["delivered"] is not None:
        phase.lag_delivered_ms = tuple(v * 1000 for v in lag["delivered"])  # type: ignore[assignment]
    print(
        f"{outcome.summary()} | checkout path {phase.checkout_trips:.2f} round trips, "
        f"delivery loop {phase.delivery_statements:.2f} statements per checkout, "
        f"h2s_link_session mean {phase.link_mean_ms:.3f} ms; "
        f"lag first/delivered p50,p99 ms {phase.lag_first_ms} {phase.lag_delivered_ms}",
        flush=True,
    )
    return phase


async def _reset_statements(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("select pg_stat_statements_reset()")
    finally:
        await conn.close()


def _without_notify(definition: str) -> str:
    return definition.replace("perform pg_notify('h2s_events', '');", "")


async def _set_function(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def bench(duration_s: float, clients: int, rounds: int, durable: bool) -> list[Phase]:
    with tempfile.TemporaryDirectory(prefix="h2s-bench-events-") as tmp:
        work = Path(tmp)
        db = Database(None, work / "pg", durable=durable)
        emulator = EmulatorProcess(work)
        server: ServerProcess | None = None
        runner: web.AppRunner | None = None
        try:
            dsn = db.start()
            apply_migrations(dsn)
            problem = await dbstats.ensure_extension(dsn)
            if problem:
                raise SystemExit(problem)
            current_link = await _definition(dsn, "h2s_link_session")
            current_enqueue = await _definition(dsn, "h2s_enqueue_order_event")
            emulator.start()
            port = free_port()
            runner = await _receiver(port)
            admin = {"Authorization": f"Bearer {BENCH_ADMIN_TOKEN}"}
            phases: list[Phase] = []
            for r in range(rounds):
                for loop_on in (True, False):
                    env = {"H2S_EVENTS_ALLOW_PRIVATE": "true"}
                    if not loop_on:
                        env["H2S_EVENTS_POLL_S"] = "0"
                    server = ServerProcess(dsn, emulator.url, work, env=env).start()
                    await load.closed_loop(
                        "warm-up",
                        [server.url],
                        load.new_checkouts(f"w{r}{loop_on}", "w", SKUS),
                        clients=clients,
                        duration_s=3,
                        max_requests=10**9,
                        expect_status=201,
                    )
                    if loop_on:
                        for before in (True, False) if r % 2 == 0 else (False, True):
                            await _set_function(
                                dsn, _previous_link_session() if before else current_link
                            )
                            phases.append(
                                await _phase(
                                    "before" if before else "no subscriber",
                                    dsn,
                                    server.url,
                                    f"r{r}",
                                    duration_s,
                                    clients,
                                )
                            )
                        await _set_function(dsn, current_link)
                    async with httpx.AsyncClient(timeout=10, headers=admin) as http:
                        made = await http.post(
                            f"{server.url}/api/event-endpoints",
                            json={"url": f"http://127.0.0.1:{port}/events"},
                        )
                    made.raise_for_status()
                    name = "one subscriber" if loop_on else "one subscriber, loop off"
                    phases.append(
                        await _phase(name, dsn, server.url, f"r{r}{loop_on}", duration_s, clients)
                    )
                    if loop_on:
                        phases.append(
                            await _phase(
                                "one subscriber, 1 client", dsn, server.url, f"r{r}", duration_s, 1
                            )
                        )
                    else:
                        await _set_function(dsn, _without_notify(current_enqueue))
                        phases.append(
                            await _phase(
                                "one subscriber, loop off, no NOTIFY",
                                dsn,
                                server.url,
                                f"r{r}",
                                duration_s,
                                clients,
                            )
                        )
                        await _set_function(dsn, current_enqueue)
                    async with httpx.AsyncClient(timeout=10, headers=admin) as http:
                        gone = await http.delete(
                            f"{server.url}/api/event-endpoints/{made.json()['id']}"
                        )
                    gone.raise_for_status()
                    server.stop()
                    server = None
            return phases
        finally:
            if runner is not None:
                await runner.cleanup()
            if server is not None:
                server.stop()
            emulator.stop()
            db.stop()


async def _definition(dsn: str, function: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        body = await conn.fetchval("select pg_get_functiondef($1::regproc)", function)
    finally:
        await conn.close()
    return str(body)


def table(phases: list[Phase]) -> str:
    rows = [
        "| phase | checkouts/s | p50 ms | p99 ms | round trips per checkout (checkout path) "
        "| delivery loop statements per checkout | h2s_link_session mean ms "
        "| lag to first attempt p50 / p99 ms | lag to delivered p50 / p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in (
        "before",
        "no subscriber",
        "one subscriber",
        "one subscriber, loop off",
        "one subscriber, loop off, no NOTIFY",
        "one subscriber, 1 client",
    ):
        mine = [p for p in phases if p.name == name]
        if not mine:
            continue

        def avg(values: list[float]) -> float:
            return statistics.fmean(values)

        def lag(pairs: list[tuple[float, float] | None]) -> str:
            got = [p for p in pairs if p]
            if not got:
                return "-"
            return f"{avg([p[0] for p in got]):.1f} / {avg([p[1] for p in got]):.1f}"

        rows.append(
            f"| {name} | {avg([p.rate for p in mine]):.0f} | {avg([p.p50_ms for p in mine]):.1f} "
            f"| {avg([p.p99_ms for p in mine]):.1f} | {avg([p.checkout_trips for p in mine]):.2f} "
            f"| {avg([p.delivery_statements for p in mine]):.2f} "
            f"| {avg([p.link_mean_ms for p in mine]):.3f} "
            f"| {lag([p.lag_first_ms for p in mine])} | {lag([p.lag_delivered_ms for p in mine])} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m h2s_bench.events")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-durable", action="store_true", help="fsync off")
    args = parser.parse_args(argv)
    phases = asyncio.run(bench(args.duration, args.clients, args.rounds, not args.no_durable))
    print()
    print(table(phases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
