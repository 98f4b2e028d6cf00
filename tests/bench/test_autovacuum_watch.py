"""The bench's autovacuum watch sees PostgreSQL's autovacuum workers and what they use."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from h2s_checkout.bench.stack import Autovacuum, AutovacuumWatch, CpuSplit, pooled_cpu
from h2s_checkout.store.embedded import EmbeddedPostgres


async def _sql(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
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
                # Vacuumed once 1,000 rows were deleted, whatever its size, and without
                # the cost delay: a throttled worker sleeps most of the time, and on a
                # slow disk it was once seen in 80% of the samples with no CPU tick yet.
                "insert into churn select n, repeat('x', 20) from generate_series(1, 1000000) n",
                "delete from churn where n % 2 = 0",
                "alter table churn set (autovacuum_enabled = true,"
                " autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0,"
                " autovacuum_vacuum_cost_delay = 0)",
            )
        )
        # Watched until a worker has used a tick of CPU (10 ms) while seen: a watch that
        # never counts a worker's CPU still fails, at the deadline.
        seen = Autovacuum(0.0, 0.0)
        deadline = time.monotonic() + 60
        while seen.cores == 0 and time.monotonic() < deadline:
            with AutovacuumWatch(postmaster, interval_s=0.02) as watch:
                time.sleep(0.5)
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
