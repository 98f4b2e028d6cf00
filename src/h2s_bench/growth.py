"""The phase of `--prefill N`: the same figures on the run's database, then again after N
finished checkouts were written into it (``bench/prefill.py``).

Each side measures: new checkouts and replays at 64 clients; the portal's queued jobs and
a job found by order id, and a checkout's timeline by id and by order id, each from a few
clients on rows sampled from the database; one reconciler pass and the doctor's database
checks, in this process with the service's own code (three times each).

The two ratios (new checkouts' rate and a replay's p99, prefilled against not) are taken
apart from that, after the prefill, side by side (`Paired`): minutes pass between the
before and the after, and a machine's speed can drift by a third in that time, which a
ratio of two moments would count as the database's doing.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg

from h2s_bench import load, prefill
from h2s_bench.compare import Side
from h2s_bench.load import Outcome, Req
from h2s_bench.session import Session
from h2s_bench.stack import BENCH_ADMIN_TOKEN, CpuSplit, ServerProcess
from h2s_checkout.bootstrap import open_services
from h2s_checkout.flows.doctor import DATABASE_CONCURRENCY, DoctorOptions, run_checks
from h2s_checkout.settings import EMULATOR_API_KEY, Settings
from h2s_checkout.store.migrate import apply_migrations
from h2s_checkout.store.pool import create_pool

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

ADMIN = {"Authorization": f"Bearer {BENCH_ADMIN_TOKEN}"}
REPEATS = 3

# Rows the reads ask for, drawn at random from what the database holds at that moment.
_SAMPLE = """
select c.checkout_id::text as checkout_id, c.order_id
from h2s_checkouts c tablesample system ($1)
where c.order_id is not null
limit $2
"""
_COUNT = "select count(*) from h2s_checkouts"


@dataclass
class Reads:
    """The figures of one side (before or after the prefill)."""

    workloads: dict[str, Outcome] = field(default_factory=dict)
    cpu: dict[str, CpuSplit] = field(default_factory=dict)
    reconcile_s: list[float] = field(default_factory=list)
    reconcile_report: str = ""
    doctor_s: list[float] = field(default_factory=list)
    doctor_found: dict[str, int | None] = field(default_factory=dict)
    doctor_command_s: float | None = None
    doctor_command_exit: int | None = None
    checkouts_in_db: int = 0

    def p99(self, key: str) -> float | None:
        o = self.workloads.get(key)
        return o.pct(99) if o is not None and o.latencies_ms else None

    def rate(self, key: str) -> float | None:
        o = self.workloads.get(key)
        return o.rate if o is not None else None

    @property
    def reconcile_median_s(self) -> float | None:
        return statistics.median(self.reconcile_s) if self.reconcile_s else None

    @property
    def doctor_median_s(self) -> float | None:
        return statistics.median(self.doctor_s) if self.doctor_s else None


UNFILLED, FILLED = "unfilled", "prefilled"
# The blocks of the side-by-side measurement: each pair's order flips (ABBA).
PAIRED_ORDER = (UNFILLED, FILLED, FILLED, UNFILLED)
UNFILLED_DATABASE = "h2s_unfilled"


@dataclass
class Paired:
    """New checkouts and their replays at 64 clients on the prefilled database and on an
    unfilled one of the same PostgreSQL, each served by a worker of its own, one loaded at a
    time, in the blocks of PAIRED_ORDER; a side's figure pools its blocks (as `--against`'s
    sides do)."""

    order: list[str] = field(default_factory=list)
    sides: dict[str, Side] = field(
        default_factory=lambda: {UNFILLED: Side(UNFILLED), FILLED: Side(FILLED)}
    )

    def rate(self, side: str, key: str) -> float | None:
        o = self.sides[side].outcome(key)
        return o.rate if o is not None and o.ok else None

    def p99(self, side: str, key: str) -> float | None:
        o = self.sides[side].outcome(key)
        return o.pct(99) if o is not None and o.latencies_ms else None

    def cpu_ms(self, side: str, key: str, group: str) -> float | None:
        return self.sides[side].cpu_ms(key, group)

    def ratio(self, value: Callable[[str], float | None]) -> float | None:
        filled, unfilled = value(FILLED), value(UNFILLED)
        return None if filled is None or unfilled is None or unfilled <= 0 else filled / unfilled


@dataclass
class Growth:
    rows: int
    filled: prefill.Prefilled | None = None
    before: Reads = field(default_factory=Reads)
    after: Reads = field(default_factory=Reads)
    paired: Paired | None = None

    def ratio(self, value: Callable[[Reads], float | None]) -> float | None:
        b, a = value(self.before), value(self.after)
        return None if a is None or b is None or b <= 0 else a / b

    @property
    def new_rate_ratio(self) -> float | None:
        """New checkouts/s at 64 clients, prefilled over not: side by side when measured."""
        paired = self.paired
        if paired is not None:
            return paired.ratio(lambda side: paired.rate(side, "new"))
        return self.ratio(lambda r: r.rate("new"))

    @property
    def replay_p99_ratio(self) -> float | None:
        """A replay's p99 at 64 clients, prefilled over not: side by side when measured."""
        paired = self.paired
        if paired is not None:
            return paired.ratio(lambda side: paired.p99(side, "replay"))
        return self.ratio(lambda r: r.p99("replay"))


# (key, label) of the read workloads, in the order they run.
READS = (
    ("portal_queued", "portal: GET /api/portal/jobs?status=queued"),
    ("portal_order", "portal: GET /api/portal/jobs?order_id=…"),
    ("timeline", "timeline: GET /api/checkouts/{id}/timeline"),
    ("timeline_order", "timeline: GET /api/orders/{order_id}/timeline"),
)


def run_growth(bench: Session) -> Growth:
    growth = Growth(bench.config.prefill)
    growth.before = measure(bench, "before")
    bench.settle("the prefill")
    bench.say(f"prefilling {bench.config.prefill:,} finished checkouts …")
    growth.filled = bench.run_async(
        prefill.prefill(bench.db.dsn, bench.config.prefill, bench.run_id)
    )
    f = growth.filled
    bench.say(
        f"prefilled in {f.insert_s:.0f} s + VACUUM ANALYZE {f.vacuum_s:.0f} s: "
        + ", ".join(f"{t} {n:,}" for t, n in f.rows.items())
    )
    growth.after = measure(bench, "after")
    growth.paired = run_paired(bench)
    return growth


def run_paired(bench: Session) -> Paired:
    """New checkouts and replays on the prefilled database (``bench.servers[0]``) and on a
    new, unfilled one, served side by side and alternated (see `Paired`)."""
    config = bench.config
    filled = bench.servers[0]
    dsn = bench.run_async(bench.db.create_sibling(UNFILLED_DATABASE))
    apply_migrations(dsn)
    unfilled = ServerProcess(dsn, bench.emulator.url, bench.work)
    servers = {FILLED: filled, UNFILLED: unfilled}
    paired = Paired()
    try:
        unfilled.start()
        bench.rss.watch(unfilled.worker_pids(), "1 worker, unfilled database")
        bench.run_workload(
            "warm-up, unfilled database",
            load.new_checkouts(bench.run_id, "unfilled-warm", bench.skus),
            clients=16,
            duration_s=config.warmup_s,
            server=unfilled,
            idle=[filled],
        )
        for n, side in enumerate(PAIRED_ORDER):
            other = UNFILLED if side == FILLED else FILLED
            paired.order.append(side)
            new, cpu = bench.run_workload(
                f"{side} database, side by side: new checkouts, 64 clients",
                load.new_checkouts(bench.run_id, f"pair{n}", bench.skus),
                clients=64,
                duration_s=config.duration_s,
                server=servers[side],
                idle=[servers[other]],
                keep_bodies=20_000,
            )
            bodies, new.ok_bodies = new.ok_bodies, []
            paired.sides[side].add("new", new, cpu)
            replay, cpu = bench.run_workload(
                f"{side} database, side by side: replays, 64 clients",
                load.replays(bodies or [b"{}"]),
                clients=64,
                duration_s=config.duration_s,
                server=servers[side],
                idle=[servers[other]],
            )
            paired.sides[side].add("replay", replay, cpu)
    finally:
        unfilled.stop()
        if not bench.db.embedded:
            bench.run_async(bench.db.drop_sibling(UNFILLED_DATABASE))
    return paired


def measure(bench: Session, side: str) -> Reads:
    config = bench.config
    reads = Reads()
    tag = f"grow-{side}"

    def run(
        key: str, label: str, make: Callable[[int], Req], clients: int, keep_bodies: int = 0
    ) -> Outcome:
        outcome, cpu = bench.run_workload(
            f"{label}, {side} the prefill, {clients} clients",
            make,
            clients=clients,
            duration_s=config.duration_s,
            expect=200 if key not in ("new", "replay") else 201,
            keep_bodies=keep_bodies,
        )
        reads.workloads[key] = outcome
        reads.cpu[key] = cpu
        return outcome

    new = run(
        "new",
        "new checkouts",
        load.new_checkouts(bench.run_id, tag, bench.skus),
        64,
        keep_bodies=20_000,
    )
    run("replay", "replays", load.replays(new.ok_bodies or [b"{}"]), 64)
    new.ok_bodies = []
    reads.checkouts_in_db = bench.run_async(_count(bench.db.dsn))
    sample = bench.run_async(_sample(bench.db.dsn, config.growth_samples, reads.checkouts_in_db))
    checkout_ids = [s[0] for s in sample]
    order_ids = [s[1] for s in sample]
    makers: dict[str, Callable[[int], Req]] = {
        "portal_queued": load.fixed("/api/portal/jobs?status=queued", ADMIN),
        "portal_order": _each("/api/portal/jobs?order_id={}", order_ids),
        "timeline": _each("/api/checkouts/{}/timeline", checkout_ids),
        "timeline_order": _each("/api/orders/{}/timeline", order_ids),
    }
    for key, label in READS:
        run(key, label, makers[key], config.growth_clients)

    settings = Settings(
        database_url=bench.db.dsn,
        stripe_api_base=bench.emulator.url,
        stripe_api_key=EMULATOR_API_KEY,
        public_base_url=bench.servers[0].url,
    )
    bench.settle("the reconciler and the doctor")
    reads.reconcile_s, reads.reconcile_report = bench.run_async(_reconcile(settings))
    reads.doctor_s, reads.doctor_found = bench.run_async(_doctor(bench.db.dsn))
    reads.doctor_command_s, reads.doctor_command_exit = _doctor_command(bench)
    bench.say(
        f"{side} the prefill: reconciler pass {_fmt(reads.reconcile_s)} s "
        f"({reads.reconcile_report}); doctor's checks {_fmt(reads.doctor_s)} s, "
        f"`h2s-checkout doctor` {reads.doctor_command_s:.2f} s (exit {reads.doctor_command_exit})"
    )
    return reads


def _fmt(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.3f}" for v in values)


def _each(template: str, values: Sequence[str]) -> Callable[[int], Req]:
    requests = [Req("GET", template.format(v), headers=ADMIN) for v in values] or [
        Req("GET", template.format("none"), headers=ADMIN)
    ]
    return lambda n: requests[n % len(requests)]


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(_COUNT))
    finally:
        await conn.close()


async def _sample(dsn: str, size: int, total: int) -> list[tuple[str, str]]:
    # Whole pages at random, twice the share needed so that the sample is rarely short;
    # shuffled, since a page holds checkouts made one after the other.
    percent = min(100.0, 200.0 * size / max(total, 1))
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(_SAMPLE, percent, size)
    finally:
        await conn.close()
    sample = [(r["checkout_id"], r["order_id"]) for r in rows]
    random.shuffle(sample)
    return sample


async def _reconcile(settings: Settings) -> tuple[list[float], str]:
    """Passes of the service's Reconciler on this database (pool opened beforehand)."""
    times: list[float] = []
    report = ""
    async with open_services(settings) as services:
        for _ in range(REPEATS):
            started = time.perf_counter()
            report = str(await services.reconciler.run_once())
            times.append(time.perf_counter() - started)
    return times, report


async def _doctor(dsn: str) -> tuple[list[float], dict[str, int | None]]:
    """The doctor's database checks (its provider checks are left out: they cost one
    provider call per order of the window, whatever the size of the tables)."""
    pool = await create_pool(dsn, min_size=1, max_size=DATABASE_CONCURRENCY)
    times: list[float] = []
    found: dict[str, int | None] = {}
    try:
        for _ in range(REPEATS):
            started = time.perf_counter()
            results = await run_checks(
                pool, None, DoctorOptions(), concurrency=DATABASE_CONCURRENCY
            )
            times.append(time.perf_counter() - started)
            found = {r.name: r.count for r in results if r.skipped is None}
    finally:
        await pool.close()
    return times, found


def _doctor_command(bench: Session) -> tuple[float, int]:
    """`h2s-checkout doctor` as an operator runs it (interpreter start-up included), with
    no payment provider configured."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("H2S_", "STRIPE_"))},
        "DATABASE_URL": bench.db.dsn,
        "H2S_DATA_DIR": str(bench.work / "doctor-data"),
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "h2s_checkout", "doctor"],
        env=env,
        capture_output=True,
        timeout=600,
        check=False,
    )
    return time.perf_counter() - started, done.returncode
