"""The side-by-side phase of `--against REV`: the same workloads on this code and on REV.

Both are served at once, each by one granian worker on a database of its own on the same
PostgreSQL, both calling the same emulator. The workloads run on one side at a time, in
blocks alternated current, REV, REV, current (ABBA), so that a slow patch of the machine
weighs on both; a side's figure is its blocks pooled (answers over the sum of their
times, latencies together).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from h2s_bench import dbstats, load
from h2s_bench.against import Installed
from h2s_bench.load import Outcome
from h2s_bench.session import Session
from h2s_bench.stack import CpuSplit, ServerProcess, pooled_cpu

CURRENT = "current"
AGAINST = "against"


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    clients: int
    stripe_latency_ms: float = 0.0
    replay: bool = False


def workloads(stripe_latency_ms: float) -> tuple[Workload, ...]:
    """In the order each block runs them: a replay sends that block's 64-client bodies."""
    slow = int(stripe_latency_ms)
    return (
        Workload("new0@16", "new checkouts, Stripe 0 ms, 16 clients", 16),
        Workload("new0@64", "new checkouts, Stripe 0 ms, 64 clients", 64),
        Workload("replay@64", "replays of the block's own checkouts, 64 clients", 64, replay=True),
        Workload(
            f"new{slow}@64",
            f"new checkouts, Stripe {slow} ms, 64 clients",
            64,
            stripe_latency_ms=stripe_latency_ms,
        ),
    )


@dataclass
class Side:
    """One side's blocks: each workload's runs, its CPU, its round trips."""

    label: str
    runs: dict[str, list[Outcome]] = field(default_factory=dict)
    cpu: dict[str, list[CpuSplit]] = field(default_factory=dict)
    round_trips: dict[str, dbstats.RoundTrips] = field(default_factory=dict)
    rss_mb: float | None = None

    def add(self, key: str, outcome: Outcome, cpu: CpuSplit) -> None:
        """One block's run of workload ``key``."""
        self.runs.setdefault(key, []).append(outcome)
        self.cpu.setdefault(key, []).append(cpu)

    def outcome(self, key: str) -> Outcome | None:
        runs = self.runs.get(key)
        return load.pooled(runs[0].name, runs) if runs else None

    def cpu_ms(self, key: str, group: str) -> float | None:
        """CPU milliseconds of process group ``group`` per answer, over all blocks."""
        o, splits = self.outcome(key), self.cpu.get(key)
        if o is None or not splits or o.ok == 0:
            return None
        split = pooled_cpu(splits)
        return 1000 * split.cores.get(group, 0.0) * split.seconds / o.ok

    def worker_ms(self, key: str) -> float | None:
        """The serving worker's CPU milliseconds per answer, over all blocks."""
        return self.cpu_ms(key, "server")


@dataclass
class Comparison:
    sha: str
    reused_venv: bool
    install_s: float
    versions: dict[str, dict[str, str]]  # side -> package -> version
    workloads: tuple[Workload, ...]
    sides: dict[str, Side]
    order: list[str] = field(default_factory=list)  # the sides' blocks, in run order
    notes: list[str] = field(default_factory=list)

    @property
    def short(self) -> str:
        return self.sha[:7]

    def ratio(self, key: str) -> float | None:
        """Current rate over REV's rate for one workload."""
        now, then = self.sides[CURRENT].outcome(key), self.sides[AGAINST].outcome(key)
        if now is None or then is None or then.rate <= 0:
            return None
        return now.rate / then.rate

    def overhead_p99_ms(
        self, side: str, workload: Workload, *, from_start: bool = False
    ) -> float | None:
        o = self.sides[side].outcome(workload.key)
        if o is None or not o.latencies_ms:
            return None
        value = (o.pct_from_start(99) if from_start else o.pct(99)) - workload.stripe_latency_ms
        return None if math.isnan(value) else value


def block_order(rounds: int) -> list[str]:
    """current, REV, REV, current, current, REV, ...: each pair's order flips."""
    order: list[str] = []
    for r in range(rounds):
        order += [CURRENT, AGAINST] if r % 2 == 0 else [AGAINST, CURRENT]
    return order


def run_comparison(bench: Session, inst: Installed, current_label: str) -> Comparison:
    """Serve REV beside the current server (``bench.servers[0]``) and run the blocks; the
    current side is labelled ``current_label`` (its revision)."""
    config = bench.config
    current = bench.servers[0]
    name = f"h2s_against_{inst.sha[:12]}"
    dsn = bench.run_async(bench.db.create_sibling(name))
    log = bench.work / f"against-{inst.short}.log"
    inst.migrate(dsn, log)
    comparison = Comparison(
        inst.sha,
        inst.reused_venv,
        inst.install_s,
        {CURRENT: bench.current_versions(), AGAINST: inst.versions},
        workloads(config.stripe_latency_ms),
        {CURRENT: Side(current_label), AGAINST: Side(inst.short)},
    )
    problem = bench.run_async(dbstats.ensure_extension(dsn))
    if problem:
        comparison.notes.append(f"{inst.short}: round trips not counted: {problem}")
    old = ServerProcess(
        dsn,
        bench.emulator.url,
        bench.work,
        python=inst.python,
        cwd=inst.worktree,
        env=inst.env,
    )
    bench.say(f"serving {inst.short} from {inst.python} on database {name}")
    old_workers: list[int] = []
    try:
        old.start()
        old_workers = old.worker_pids()
        bench.rss.watch(old_workers, f"against {inst.short}")
        servers = {CURRENT: current, AGAINST: old}
        dsns = {CURRENT: bench.db.dsn, AGAINST: dsn}
        # The current server is warm from the run so far; REV's gets the same warm-up.
        bench.run_workload(
            f"warm-up, {inst.short}",
            load.new_checkouts(bench.run_id, f"{inst.short}-warm", bench.skus),
            clients=16,
            duration_s=config.warmup_s,
            server=old,
            idle=[current],
        )
        for n, side in enumerate(block_order(config.compare_rounds)):
            other = AGAINST if side == CURRENT else CURRENT
            comparison.order.append(side)
            _block(
                bench,
                comparison,
                side,
                servers[side],
                servers[other],
                dsns[side],
                tag=f"cmp{n}{side[0]}",
                count_trips=side not in comparison.order[:-1],
            )
    finally:
        old.stop()
        bench.emulator.set_latency(0)
        bench.emulator.reset()
        if not bench.db.embedded:
            bench.run_async(bench.db.drop_sibling(name))
    for side, pids in ((AGAINST, old_workers), (CURRENT, current.worker_pids())):
        peaks = [bench.rss.peaks_mb[p] for p in pids if p in bench.rss.peaks_mb]
        comparison.sides[side].rss_mb = max(peaks, default=None)
    return comparison


def _block(
    bench: Session,
    comparison: Comparison,
    side_name: str,
    server: ServerProcess,
    idle: ServerProcess,
    dsn: str,
    *,
    tag: str,
    count_trips: bool,
) -> None:
    config = bench.config
    side = comparison.sides[side_name]
    bench.emulator.reset()
    bodies: list[bytes] = []
    for w in comparison.workloads:
        if w.stripe_latency_ms != bench.emulator.latency_ms:
            bench.emulator.set_latency(w.stripe_latency_ms)
        if w.replay:
            make = load.replays(bodies or [load.checkout_body("nobody@example.com", bench.skus[0])])
        else:
            make = load.new_checkouts(bench.run_id, f"{tag}-{w.key.replace('@', 'c')}", bench.skus)
        trips = count_trips and w.key in ("new0@16", "replay@64")
        before = bench.run_async(dbstats.snapshot(dsn)) if trips else None
        outcome, cpu = bench.run_workload(
            f"{side.label}: {w.label}",
            make,
            clients=w.clients,
            duration_s=config.slow_duration_s if w.stripe_latency_ms else config.duration_s,
            warm_s=config.slow_warm_s if w.stripe_latency_ms else 0.0,
            server=server,
            idle=[idle],
            keep_bodies=20_000 if w.key == "new0@64" else 0,
        )
        if before is not None:
            after = bench.run_async(dbstats.snapshot(dsn))
            side.round_trips["replay" if w.replay else "new"] = dbstats.delta(
                before, after, outcome.ok
            )
        if w.key == "new0@64":
            bodies = outcome.ok_bodies
            outcome.ok_bodies = []
        side.add(w.key, outcome, cpu)
    bench.emulator.set_latency(0)
