"""The state a benchmark run shares with each of its phases.

A `Session` holds the configuration, the processes under test (PostgreSQL, the Stripe
emulator, the servers), the event loop the harness runs its coroutines on, and the one way
every phase measures: a closed loop on a quiet machine, metered per process group. The
main run (run.py) is a session with its own workloads and results; the phases it calls,
`--against REV` (compare.py) and `--prefill N` (growth.py), take the session and return
their figures, so that none of them imports the module of another to reach what they share.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from h2s_bench import against, load
from h2s_bench.stack import (
    CpuMeter,
    CpuSplit,
    Database,
    EmulatorProcess,
    RssSampler,
    ServerProcess,
)

T = TypeVar("T")


@dataclass
class BenchConfig:
    """How long and how hard; ``quick()`` is the few-seconds variant the test runs."""

    out_dir: Path
    database_url: str | None = None
    durable: bool = True
    quick: bool = False
    duration_s: float = 6.0  # each throughput workload
    slow_duration_s: float = 8.0  # the Stripe-latency workloads
    # Their first second is a warm-up: its answers count in the rate, not in the latencies.
    slow_warm_s: float = 1.0
    ceiling_duration_s: float = 5.0
    warmup_s: float = 2.0
    clients_fast: tuple[int, ...] = (1, 16, 64)
    clients_slow: tuple[int, ...] = (64, 256)
    stripe_latency_ms: float = 300.0
    replay_clients: int = 64
    scaling_clients: int = 64
    round_trip_checkouts: int = 400
    issue3_carts: int = 100
    issue3_copies: int = 10
    issue3_servers: int = 3
    issue3_in_flight: int = 100
    profile_s: float = 6.0
    run_profile: bool = True
    # Before each workload, wait up to quiet_wait_s (and quiet_budget_s over the whole run)
    # for other processes to use at most quiet_cores.
    quiet_wait_s: float = 30.0
    quiet_budget_s: float = 120.0
    quiet_cores: float = 0.25
    max_requests: int = 200_000  # per workload: every loop is bounded in count and in time
    # --against REV: REV served beside this code, blocks alternated ABBA (2 rounds).
    against: str | None = None
    against_python: Path | None = None  # an interpreter with REV installed: no venv built
    compare_rounds: int = 2  # pairs of blocks (each side once per pair)
    # --prefill N: the figures before and after N finished checkouts are written.
    prefill: int = 0
    growth_clients: int = 4  # the portal and timeline reads
    growth_samples: int = 2000  # rows those reads ask for
    # --pooler: new checkouts direct and through PgBouncer in transaction mode.
    pooler: bool = False

    @classmethod
    def quick_config(cls, out_dir: Path, database_url: str | None = None) -> BenchConfig:
        return cls(
            out_dir=out_dir,
            database_url=database_url,
            durable=False,
            quick=True,
            duration_s=0.6,
            slow_duration_s=1.0,
            slow_warm_s=0.2,
            ceiling_duration_s=0.5,
            warmup_s=0.3,
            round_trip_checkouts=30,
            issue3_carts=10,
            issue3_copies=10,
            profile_s=1.0,
            max_requests=5_000,
            quiet_wait_s=0.0,
        )


def say(text: str) -> None:
    print(f"[bench] {text}", flush=True)


class Session:
    """What every phase of one run uses: the config, the stack, the loop, the quiet wait."""

    def __init__(
        self,
        config: BenchConfig,
        work: Path,
        runner: asyncio.Runner,
        installed: against.Installed | None = None,
    ) -> None:
        self.config = config
        self.work = work
        self.runner = runner
        self.installed = installed
        self.run_id = uuid.uuid4().hex[:8]
        self.db = Database(config.database_url, work / "pg", durable=config.durable)
        self.emulator = EmulatorProcess(work)
        self.rss = RssSampler()
        self.servers: list[ServerProcess] = []
        self.skus: list[str] = []
        self.quiet_budget_s = config.quiet_budget_s
        self.waited_s = 0.0
        self.others: list[tuple[str, float]] = []  # (workload, cores other processes used)

    def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def start_servers(self, count: int, workers: int, label: str) -> list[ServerProcess]:
        started = []
        for _ in range(count):  # one at a time: each applies the migrations on start
            server = ServerProcess(self.db.dsn, self.emulator.url, self.work, workers=workers)
            self.servers.append(server)
            server.start()
            self.rss.watch(server.worker_pids(), label)
            started.append(server)
        return started

    def stop_servers(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers = []

    def say(self, text: str) -> None:
        say(text)

    def current_versions(self) -> dict[str, str]:
        return against.package_versions(sys.executable)

    def meter(
        self, server: ServerProcess | None = None, idle: Sequence[ServerProcess] = ()
    ) -> CpuMeter:
        """CPU per process group; ``server`` alone as "server" when given (the others that
        are up but get no load: ``idle``)."""
        serving = [server] if server is not None else self.servers
        groups: dict[str, list[int]] = {"server": [s.pid for s in serving]}
        if idle:
            groups["idle server"] = [s.pid for s in idle]
        if self.db.postmaster_pid is not None:
            groups["postgres"] = [self.db.postmaster_pid]
        groups["emulator"] = [self.emulator.pid]
        groups["generator"] = [os.getpid()]
        return CpuMeter(groups, solo=("generator",), autovacuum_of=self.db.postmaster_pid)

    def run_workload(
        self,
        name: str,
        make: Callable[[int], load.Req],
        *,
        clients: int,
        duration_s: float,
        urls: Sequence[str] | None = None,
        server: ServerProcess | None = None,
        idle: Sequence[ServerProcess] = (),
        expect: int = 201,
        keep_bodies: int = 0,
        max_requests: int | None = None,
        settle: bool = True,
        warm_s: float = 0.0,
    ) -> tuple[load.Outcome, CpuSplit]:
        """A closed loop against ``server`` (default: the first one up, or ``urls``),
        metered; waits for a quiet machine first unless ``settle`` is False."""
        urls = urls or [(server or self.servers[0]).url]
        if settle:
            self.settle(name)
        with self.meter(server, idle) as meter:
            outcome = self.run_async(
                load.closed_loop(
                    name,
                    urls,
                    make,
                    clients=clients,
                    duration_s=duration_s,
                    max_requests=max_requests or self.config.max_requests,
                    expect_status=expect,
                    keep_bodies=keep_bodies,
                    warm_s=warm_s,
                )
            )
        say(f"{outcome.summary()} | cores: {meter.result.describe()}")
        self.others.append((name, meter.result.cores.get("other", 0.0)))
        return outcome, meter.result

    def settle(self, label: str) -> None:
        """Other processes on a 2-core machine skew every figure: before each workload,
        wait (bounded per workload and in total) until they use little CPU."""
        config = self.config
        limit = min(config.quiet_wait_s, self.quiet_budget_s)
        if limit <= 0:
            return
        started: float | None = None  # when the first busy sample was seen
        while True:
            with self.meter() as meter:
                time.sleep(0.5)
            other = meter.result.cores.get("other", 0.0)
            if other <= config.quiet_cores:
                break
            if started is None:
                started = time.monotonic()
                say(f"other work on the machine uses {other:.2f} cores; waiting before {label}")
            elif time.monotonic() - started >= limit:
                break
        if started is not None:
            waited = time.monotonic() - started
            self.quiet_budget_s -= waited
            self.waited_s += waited
