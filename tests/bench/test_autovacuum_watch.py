"""The bench's autovacuum watch sees PostgreSQL's autovacuum workers and what they use."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from h2s_bench.stack import Autovacuum, AutovacuumWatch, CpuSplit, pooled_cpu
from h2s_checkout.store.embedded import EmbeddedPostgres


async def _sql(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _until_vacuumed_and_gone(dsn: str, deadline_s: float) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            done = await conn.fetchval(
                "select last_autovacuum is not null and last_autoanalyze is not null"
                " from pg_stat_user_tables where relname = 'churn'"
            )
            workers = await conn.fetchval(
                "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'"
            )
            if done and workers == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("churn was not vacuumed and analysed in time")
    finally:
        await conn.close()


def test_a_worker_that_vacuums_during_the_watch_is_seen_with_its_cpu(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", durable=False)
    dsn = pg.start()
    try:
        postmaster = int((tmp_path / "pg" / "postmaster.pid").read_text().splitlines()[0])
        asyncio.run(
            _sql(
                dsn,
                # No worker at all while the quiet watch runs.
                "alter system set autovacuum = off",
                "select pg_reload_conf()",
                "create table churn (n int, pad text) with (autovacuum_enabled = false)",
            )
        )
        with AutovacuumWatch(postmaster, interval_s=0.02) as quiet:
            time.sleep(0.3)
        asyncio.run(
            _sql(
                dsn,
                "alter system set autovacuum = on",
                "alter system set autovacuum_naptime = 1",
                "select pg_reload_conf()",
                "insert into churn select n, repeat('x', 20) from generate_series(1, 1000000) n",
                "delete from churn where n % 2 = 0",
            )
        )
        # One watch over the worker's whole life: from before the table may be vacuumed
        # until its worker has vacuumed and analysed it and left. A worker that ended is
        # counted by what the postmaster reaped, so its CPU is all there, however the
        # samples fell (stop 19's CI once watched a throttled worker in 80% of the samples
        # of a shorter watch without a tick of CPU yet).
        with AutovacuumWatch(postmaster, interval_s=0.02) as watch:
            asyncio.run(
                _sql(
                    dsn,
                    # Vacuumed once 1,000 rows were deleted, whatever its size.
                    "alter table churn set (autovacuum_enabled = true,"
                    " autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0)",
                )
            )
            asyncio.run(_until_vacuumed_and_gone(dsn, deadline_s=90))
            time.sleep(0.1)  # reaped, and seen to be gone by a sample
        seen = watch.result
    finally:
        pg.stop()
    assert quiet.result == Autovacuum(0.0, 0.0)
    assert 0 < seen.share <= 1
    assert seen.cores > 0


def test_pooled_workloads_weigh_autovacuum_by_their_length_or_drop_it() -> None:
    a = CpuSplit(2.0, {"postgres": 1.0}, Autovacuum(0.4, 0.5))
    b = CpuSplit(6.0, {"postgres": 0.5}, Autovacuum(0.0, 0.0))
    assert pooled_cpu([a, b]).autovacuum == Autovacuum(0.1, 0.125)
    # A workload that was not watched leaves the pool without a figure, not a smaller one.
    assert pooled_cpu([a, CpuSplit(6.0, {"postgres": 0.5})]).autovacuum is None


class _Scripted(AutovacuumWatch):
    """The watch's accounting over scripted reads of the postmaster (no thread samples:
    the interval outlasts the test)."""

    def __init__(self, reads: list[tuple[dict[int, float], set[int], float]]) -> None:
        super().__init__(postmaster_pid=0, interval_s=3600)
        self._reads = iter(reads)

    def _read(self) -> tuple[dict[int, float], set[int], float]:
        return next(self._reads)


def test_a_worker_reaped_in_the_middle_of_a_read_keeps_the_cpu_it_was_seen_to_use() -> None:
    watch = _Scripted(
        [
            ({}, set(), 1.0),  # entering: no worker yet
            ({7: 0.2}, {7}, 1.0),  # a sample sees worker 7 with 0.2 s of CPU
            # Reaped after the postmaster's times were read, before its children were
            # listed: gone, and nothing of it in those times yet.
            ({}, set(), 1.0),
            ({}, set(), 1.3),  # leaving: now it is, with no worker left to charge it to
        ]
    )
    with watch:
        watch._sample()
        watch._sample()
    assert watch.result.share == 1 / 3
    assert watch.result.cores > 0
