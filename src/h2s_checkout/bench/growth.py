"""The phase of `--prefill N`: the same figures on the run's database, then again after N
finished checkouts were written into it (``bench/prefill.py``).

Each side measures: new checkouts and replays at 64 clients; the portal's queued jobs and
a job found by order id, and a checkout's timeline by id and by order id, each from a few
clients on rows sampled from the database; one reconciler pass and the doctor's database
checks, in this process with the service's own code (three times each).
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

from h2s_checkout.bench import load, prefill
from h2s_checkout.bench.load import Outcome, Req
from h2s_checkout.bench.stack import BENCH_ADMIN_TOKEN, CpuSplit
from h2s_checkout.flows.doctor import DoctorOptions, run_checks
from h2s_checkout.services import open_services
from h2s_checkout.settings import EMULATOR_API_KEY, Settings
from h2s_checkout.store.pool import create_pool

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from h2s_checkout.bench.run import _Bench

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


@dataclass
class Growth:
    rows: int
    filled: prefill.Prefilled | None = None
    before: Reads = field(default_factory=Reads)
    after: Reads = field(default_factory=Reads)

    def ratio(self, value: Callable[[Reads], float | None]) -> float | None:
        b, a = value(self.before), value(self.after)
        return None if a is None or b is None or b <= 0 else a / b


# (key, label) of the read workloads, in the order they run.
READS = (
    ("portal_queued", "portal: GET /api/portal/jobs?status=queued"),
    ("portal_order", "portal: GET /api/portal/jobs?order_id=…"),
    ("timeline", "timeline: GET /api/checkouts/{id}/timeline"),
    ("timeline_order", "timeline: GET /api/orders/{order_id}/timeline"),
)


def run_growth(bench: _Bench) -> Growth:
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
    return growth


def measure(bench: _Bench, side: str) -> Reads:
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
    pool = await create_pool(dsn, min_size=1, max_size=1)
    times: list[float] = []
    found: dict[str, int | None] = {}
    try:
        for _ in range(REPEATS):
            started = time.perf_counter()
            results = await run_checks(pool, None, DoctorOptions())
            times.append(time.perf_counter() - started)
            found = {r.name: r.count for r in results if r.skipped is None}
    finally:
        await pool.close()
    return times, found


def _doctor_command(bench: _Bench) -> tuple[float, int]:
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
