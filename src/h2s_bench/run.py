"""The benchmark run: start the stack, run each workload in turn, collect the figures.

The main run's workloads are methods of `MainRun`, a `Session` (session.py) with its
results; `--against REV` and `--prefill N` are phases of their own (compare.py,
growth.py) that it calls with itself as their session.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from h2s_bench import (
    against,
    ceiling,
    compare,
    dbstats,
    growth,
    load,
    pooler,
    profile,
    tracing_cost,
)
from h2s_bench.session import BenchConfig, Session, say
from h2s_bench.stack import CpuSplit, pooled_cpu
from h2s_checkout.observability.logging import configure_logging
from h2s_checkout.settings import EMULATOR_API_KEY, Settings
from h2s_checkout.store.migrate import apply_migrations


@dataclass
class Results:
    config: BenchConfig
    env: dict[str, str] = field(default_factory=dict)
    workloads: dict[str, load.Outcome] = field(default_factory=dict)
    cpu: dict[str, CpuSplit] = field(default_factory=dict)
    round_trips: dbstats.RoundTrips | None = None
    replay_round_trips: dbstats.RoundTrips | None = None
    recorded: ceiling.Compiled | None = None
    rss_mb: dict[str, float] = field(default_factory=dict)  # "label pid" -> peak MB
    storm: load.StormResult | None = None
    profile: profile.Profile | None = None
    comparison: compare.Comparison | None = None
    growth: growth.Growth | None = None
    tracing: tracing_cost.TracingCost | None = None
    pooler: pooler.Pooled | None = None
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    wall_s: float = 0.0


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if importlib.util.find_spec("uvloop") is None:
        return None
    import uvloop

    return uvloop.new_event_loop


def _server_loop() -> str:
    """What granian's default (`auto`) loop resolves to in this environment."""
    for name in ("rloop", "uvloop"):
        if importlib.util.find_spec(name) is not None:
            return name
    return "asyncio"


def _git_revision() -> tuple[str, str, bool]:
    """(short sha, full sha, uncommitted changes) of the checkout this harness runs from."""
    here = str(Path(__file__).resolve().parent)
    try:
        head = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        # The bench's own outputs, rewritten by every run, do not make the code dirty.
        dirty = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", ":/"]
            + [f":(top,exclude)docs/benchmarks.{ext}" for ext in ("md", "json", "png")],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", "", False
    return (head[:7] or "unknown"), head, bool(dirty)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


class MainRun(Session):
    """The session of the whole run, with the main run's own workloads and their results
    (the phases it calls take it as their `Session`)."""

    def __init__(
        self,
        config: BenchConfig,
        work: Path,
        runner: asyncio.Runner,
        installed: against.Installed | None = None,
    ) -> None:
        super().__init__(config, work, runner, installed)
        self.results = Results(config)
        self.statements_counted = False
        self.ceiling_settings: Settings | None = None  # set by record_ceiling

    # -- workloads ------------------------------------------------------------------------

    def measure(
        self,
        key: str,
        name: str,
        make: Callable[[int], load.Req],
        *,
        clients: int,
        duration_s: float,
        urls: Sequence[str] | None = None,
        expect: int = 201,
        keep_bodies: int = 0,
        max_requests: int | None = None,
        settle: bool = True,
        warm_s: float = 0.0,
    ) -> load.Outcome:
        """One workload of the main run, kept under ``key`` in the results."""
        outcome, cpu = self.run_workload(
            name,
            make,
            clients=clients,
            duration_s=duration_s,
            urls=urls,
            expect=expect,
            keep_bodies=keep_bodies,
            max_requests=max_requests,
            settle=settle,
            warm_s=warm_s,
        )
        self.results.workloads[key] = outcome
        self.results.cpu[key] = cpu
        return outcome

    def ceiling_b_and_replays(self, dsn: str, stored: Sequence[bytes]) -> None:
        """Ceiling B and the replays in blocks B, R, R, B, each side pooled (answers over
        the sum of their times, CPU weighted by time), so that their ratio is not moved by
        a machine whose speed drifts over the half minute they take (the same replays ran
        at 3,330 to 4,331/s in four blocks of one run). pg_stat_statements is read around
        the two replay blocks: round trips per replay."""
        config = self.config
        healthz_name = "ceiling B: GET /healthz, 64 clients"
        replay_name = f"replays of stored checkouts, {config.replay_clients} clients"
        healthz: list[tuple[load.Outcome, CpuSplit]] = []
        replays: list[tuple[load.Outcome, CpuSplit]] = []

        def ceiling_b() -> None:
            healthz.append(
                self.run_workload(
                    healthz_name,
                    load.fixed("/healthz"),
                    clients=64,
                    duration_s=config.duration_s,
                    expect=200,
                )
            )

        ceiling_b()
        self.settle(replay_name)
        before = self.run_async(dbstats.snapshot(dsn)) if self.statements_counted else None
        for _ in range(2):
            replays.append(
                self.run_workload(
                    replay_name,
                    load.replays(stored),
                    clients=config.replay_clients,
                    duration_s=config.duration_s,
                    settle=False,
                )
            )
        if before is not None:
            after = self.run_async(dbstats.snapshot(dsn))
            answered = sum(outcome.ok for outcome, _ in replays)
            self.results.replay_round_trips = dbstats.delta(before, after, answered)
            say(f"per replay: {self.results.replay_round_trips.round_trips:.2f} round trips")
        ceiling_b()
        self.keep_pooled("healthz@64", healthz_name, healthz)
        self.keep_pooled(f"replay@{config.replay_clients}", replay_name, replays)

    def keep_pooled(
        self, key: str, name: str, blocks: Sequence[tuple[load.Outcome, CpuSplit]]
    ) -> None:
        """Several blocks of one workload kept under ``key`` as one (see load.pooled)."""
        self.results.workloads[key] = load.pooled(name, [o for o, _ in blocks])
        self.results.cpu[key] = pooled_cpu(cpu for _, cpu in blocks)

    def new_checkouts(self, tag: str) -> Callable[[int], load.Req]:
        return load.new_checkouts(self.run_id, tag, self.skus)

    def record_ceiling(self) -> None:
        """One checkout's statements and Stripe call, recorded through the service's own
        flow, for ceilings A and A-sql to replay."""
        self.ceiling_settings = Settings(
            database_url=self.db.dsn,
            stripe_api_base=self.emulator.url,
            stripe_api_key=EMULATOR_API_KEY,
            public_base_url=self.servers[0].url,
        )
        emails = [f"bench-{self.run_id}-rec-{i}@example.com" for i in range(2)]
        bodies = [load.checkout_body(e, self.skus[0]) for e in emails]
        recordings = self.run_async(ceiling.record_checkouts(self.ceiling_settings, bodies, emails))
        compiled = ceiling.compile_recordings(recordings[0], recordings[1])
        self.results.recorded = compiled
        say(
            f"recorded one checkout: {compiled.statements} statements, "
            f"{compiled.transactions} transactions, {compiled.acquires} pool acquires, "
            f"{compiled.stripe_calls} Stripe call(s); db-made values {compiled.learned}; "
            f"self-check {'ok' if not compiled.self_check else compiled.self_check}"
        )

    def ceiling_block(
        self, prefix: str, clients: int, *, with_stripe: bool, block: int = 0
    ) -> tuple[load.Outcome, CpuSplit]:
        """One block of ceiling A (``with_stripe``) or A-sql at ``clients`` tasks."""
        assert self.results.recorded is not None
        assert self.ceiling_settings is not None
        self.settle(f"{prefix}@{clients}")
        meter = self.meter()
        outcome = self.run_async(
            ceiling.run_ceiling(
                f"ceiling {'A' if with_stripe else 'A-sql'}, {_n(clients, 'task')}",
                self.results.recorded,
                self.ceiling_settings,
                with_stripe=with_stripe,
                clients=clients,
                duration_s=self.config.ceiling_duration_s,
                max_count=self.config.max_requests,
                tag=f"{self.run_id}-{prefix}{clients}-{block}",
                meter=meter,
            )
        )
        self.others.append((outcome.name, meter.result.cores.get("other", 0.0)))
        say(f"{outcome.summary()} | cores: {meter.result.describe()}")
        return outcome, meter.result

    def new_checkouts_and_ceiling_a(self) -> list[bytes]:
        """New checkouts and ceiling A at each concurrency in blocks N, A, A, N, each side
        pooled, so that their ratio (and the worker's overhead over ceiling A) is not moved
        by a machine whose speed drifts between them; the stored checkouts of the highest
        concurrency's blocks, for the replays."""
        config = self.config
        stored: list[bytes] = []
        for clients in config.clients_fast:
            name = f"new checkouts, Stripe 0 ms, {_n(clients, 'client')}"
            keep = 10_000 if clients == max(config.clients_fast) else 0
            new: list[tuple[load.Outcome, CpuSplit]] = []
            ceil: list[tuple[load.Outcome, CpuSplit]] = []
            for block in range(2):
                new.append(
                    self.run_workload(
                        name,
                        self.new_checkouts(f"n0c{clients}b{block}"),
                        clients=clients,
                        duration_s=config.duration_s,
                        keep_bodies=keep,
                    )
                )
                if block == 0:
                    for ceil_block in range(2):
                        ceil.append(
                            self.ceiling_block("ceilA", clients, with_stripe=True, block=ceil_block)
                        )
            self.keep_pooled(f"new0@{clients}", name, new)
            self.keep_pooled(f"ceilA@{clients}", ceil[0][0].name, ceil)
            for outcome, _cpu in new:
                stored.extend(outcome.ok_bodies)
                outcome.ok_bodies = []
        return stored

    def ceiling_a_sql(self) -> None:
        for clients in self.config.clients_fast:
            key = f"ceilAsql@{clients}"
            outcome, cpu = self.ceiling_block("ceilAsql", clients, with_stripe=False)
            self.results.workloads[key] = outcome
            self.results.cpu[key] = cpu
        self.emulator.reset()

    def round_trip_count(self) -> None:
        if not self.statements_counted:
            return
        before = self.run_async(dbstats.snapshot(self.db.dsn))
        outcome = self.measure(
            "roundtrips",
            "new checkouts for the round-trip count, 16 clients",
            self.new_checkouts("rt"),
            clients=16,
            duration_s=max(self.config.duration_s * 3, 10.0),
            max_requests=self.config.round_trip_checkouts,
        )
        after = self.run_async(dbstats.snapshot(self.db.dsn))
        trips = dbstats.delta(before, after, outcome.ok)
        self.results.round_trips = trips
        say(
            f"per checkout: {trips.statements:.2f} top-level statements (BEGIN "
            f"{trips.begins:.2f}, COMMIT {trips.commits:.2f}, pool resets "
            f"{trips.pool_resets:.2f}) = {trips.round_trips:.2f} round trips; "
            f"{trips.nested_calls:.2f} foreign-key checks run by PostgreSQL"
        )

    def profile_worker(self) -> None:
        config = self.config
        if not config.run_profile:
            return
        if profile.py_spy() is None:
            self.results.notes.append("profile skipped: py-spy not installed (pip install py-spy)")
            say("py-spy not installed: no profile")
            return
        worker = self.servers[0].worker_pids()[0]
        raw = self.work / "profile.raw"
        self.settle("the profile")
        spy = profile.start(worker, config.profile_s, raw)
        time.sleep(0.3)  # let py-spy attach before the load starts
        self.measure(
            "profiled",
            "new checkouts under py-spy, 64 clients",
            self.new_checkouts("prof"),
            clients=64,
            duration_s=config.profile_s + 0.5,
            settle=False,
        )
        try:
            _out, err = spy.communicate(timeout=config.profile_s + 60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=10)
            self.results.notes.append("profile skipped: py-spy did not finish")
            return
        if spy.returncode != 0 or not raw.exists():
            message = err.decode(errors="replace").strip()[-300:]
            self.results.notes.append(f"profile failed: {message}")
            say(f"py-spy failed: {message}")
            return
        self.results.profile = profile.summarize(raw)
        say(f"profile: {self.results.profile.samples} samples of worker {worker}")

    def storm(self) -> None:
        config = self.config
        urls = [s.url for s in self.servers[: config.issue3_servers]]
        tag = f"bench-{self.run_id}-i3"
        bodies = [
            load.checkout_body(f"{tag}-{c}@example.com", self.skus[c % len(self.skus)])
            for c in range(config.issue3_carts)
        ]
        self.settle("the duplicate storm")
        with self.meter() as meter:
            result = self.run_async(
                load.duplicate_storm(
                    urls, bodies, copies=config.issue3_copies, in_flight=config.issue3_in_flight
                )
            )
        self.results.cpu["storm"] = meter.result
        orders, _checkouts = self.run_async(dbstats.count_orders(self.db.dsn, f"{tag}-%"))
        result.orders_in_db = orders
        result.resumed_steps = self.run_async(
            dbstats.count_trace_steps(self.db.dsn, f"{tag}-%", "checkout.resumed")
        )
        self.results.storm = result
        say(
            f"issue 3: {config.issue3_carts} carts x {config.issue3_copies} over "
            f"{len(urls)} servers: {orders} orders in the database, "
            f"{len(result.order_ids)} order ids answered, 409s {result.conflicts_409}, "
            f"statuses {dict(result.statuses)}"
        )

    def pooler_phase(self) -> None:
        """--pooler: its two sides kept as workloads, or why it did not run."""
        measured = pooler.run_pooler(self)
        if isinstance(measured, str):
            self.results.notes.append(measured)
            say(measured)
            return
        self.results.pooler = measured
        for key, outcome, cpu in (
            (pooler.DIRECT, measured.direct, measured.direct_cpu),
            (pooler.POOLED, measured.pooled, measured.pooled_cpu),
        ):
            self.results.workloads[key] = outcome
            self.results.cpu[key] = cpu

    def busy_note(self) -> None:
        if self.waited_s >= 1:
            self.results.notes.append(
                f"the run waited {self.waited_s:.0f} s in all for other work on the machine "
                f"to stop (at most {self.config.quiet_wait_s:g} s per workload)"
            )
        busy = [f"{name} ({other:.2f})" for name, other in self.others if other > 0.25]
        if busy:
            self.results.notes.append(
                "other work on the machine took more than 0.25 cores during: " + "; ".join(busy)
            )

    # -- the whole run --------------------------------------------------------------------

    def environment(self) -> None:
        env = self.results.env
        env["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        short, full, dirty = _git_revision()
        env["revision"] = f"{short}{' (with uncommitted changes)' if dirty else ''}"
        env["revision_sha"] = full
        env["dirty"] = "yes" if dirty else ""
        env["machine"] = f"{os.cpu_count()} CPUs ({_cpu_model()}), Linux {platform.release()}"
        env["python"] = platform.python_version()
        env["postgres"] = (
            f"{self.run_async(dbstats.server_version(self.db.dsn))}, "
            + ("embedded" if self.db.embedded else "given by DATABASE_URL")
            + (
                (", durable (fsync on)" if self.config.durable else ", fsync off")
                if self.db.embedded
                else ""
            )
        )
        import granian

        env["server"] = (
            f"granian {granian.__version__}, `h2s-checkout serve`, event loop "
            f"{_server_loop()}, asyncpg pool 2..10 per worker, log level info (JSON to a file)"
        )
        env["generator"] = (
            f"aiohttp {__import__('aiohttp').__version__} closed loop, one process, "
            f"event loop {'uvloop' if _loop_factory() else 'asyncio'}"
        )

    def go(self) -> Results:
        config = self.config
        say(f"run {self.run_id} in {self.work} ({'quick' if config.quick else 'full'})")
        dsn = self.db.start()
        apply_migrations(dsn)
        problem = self.run_async(dbstats.ensure_extension(dsn))
        self.statements_counted = problem is None
        if problem:
            self.results.notes.append(f"round trips not counted: {problem}")
            say(f"round trips not counted: {problem}")
        self.emulator.start()
        self.environment()
        say(f"postgres {self.results.env['postgres']}; emulator {self.emulator.url}")
        self.start_servers(1, 1, "1 worker")
        catalog = httpx.get(f"{self.servers[0].url}/api/catalog", timeout=10).json()
        self.skus = [item["sku"] for item in catalog["items"]]

        self.measure(
            "warmup",
            "warm-up",
            self.new_checkouts("warm"),
            clients=16,
            duration_s=config.warmup_s,
        )
        self.record_ceiling()
        stored = self.new_checkouts_and_ceiling_a()
        self.ceiling_b_and_replays(
            dsn, stored or [load.checkout_body("nobody@example.com", self.skus[0])]
        )
        self.round_trip_count()
        self.profile_worker()
        self.ceiling_a_sql()

        self.emulator.set_latency(config.stripe_latency_ms)
        for clients in config.clients_slow:
            self.measure(
                f"new{int(config.stripe_latency_ms)}@{clients}",
                f"new checkouts, Stripe {config.stripe_latency_ms:.0f} ms, {clients} clients",
                self.new_checkouts(f"n300c{clients}"),
                clients=clients,
                duration_s=config.slow_duration_s,
                warm_s=config.slow_warm_s,
            )
        self.emulator.set_latency(0)
        self.emulator.reset()
        if self.installed is not None:
            self.results.comparison = compare.run_comparison(
                self, self.installed, self.results.env.get("revision", "this code")
            )
        self.stop_servers()

        # Tracing off, on at 100% and at 10%, side by side (tracing_cost.py).
        self.results.tracing = tracing_cost.run_tracing(self)

        self.start_servers(1, 2, "2 workers")
        self.measure(
            "workers2",
            f"new checkouts, 2 granian workers, {config.scaling_clients} clients",
            self.new_checkouts("w2"),
            clients=config.scaling_clients,
            duration_s=config.duration_s,
        )
        self.stop_servers()

        replicas = self.start_servers(2, 1, "replica")
        self.measure(
            "replicas2",
            f"new checkouts, 2 replicas, {config.scaling_clients} clients",
            self.new_checkouts("r2"),
            clients=config.scaling_clients,
            duration_s=config.duration_s,
            urls=[s.url for s in replicas],
        )
        self.emulator.reset()
        if config.issue3_servers > len(self.servers):
            self.start_servers(config.issue3_servers - len(self.servers), 1, "replica")
        self.storm()
        self.stop_servers()
        if config.pooler:
            self.pooler_phase()
        if config.prefill > 0:
            self.start_servers(1, 1, "1 worker, prefill")
            self.results.growth = growth.run_growth(self)
            self.stop_servers()
        self.results.rss_mb = {
            f"{self.rss.labels[pid]} (pid {pid})": mb
            for pid, mb in self.rss.peaks_mb.items()
            if not self.rss.labels[pid].startswith("against")
        }
        self.busy_note()
        self.results.wall_s = time.monotonic() - self.results.started
        return self.results


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="h2s-bench-") as tmp:
        yield Path(tmp)


def run_bench(config: BenchConfig, *, keep_workdir: Path | None = None) -> Results:
    """Start everything, measure everything, stop everything (also on failure)."""
    configure_logging("warning", "console")
    with contextlib.ExitStack() as stack:
        work = stack.enter_context(_workdir(keep_workdir))
        installed = None
        if config.against:
            # Before anything is measured: a revision that cannot be installed stops the
            # run at once, and the install's CPU overlaps no workload.
            say(f"installing {config.against} beside this code …")
            installed = stack.enter_context(
                against.installed(
                    config.against,
                    work,
                    python=config.against_python,
                    keep=keep_workdir is not None,
                )
            )
            say(
                f"{installed.short} ({installed.sha}) in {installed.worktree}, "
                f"{'venv reused' if installed.reused_venv else 'venv built'} "
                f"in {installed.install_s:.0f} s: {installed.python}"
            )
        runner = stack.enter_context(asyncio.Runner(loop_factory=_loop_factory()))
        bench = MainRun(config, work, runner, installed)
        try:
            with bench.rss:
                return bench.go()
        finally:
            bench.stop_servers()
            bench.emulator.stop()
            bench.db.stop()
            sys.stdout.flush()
