"""The benchmark harness runs end to end and prints its table (`--quick`: tiny counts).

No figure is asserted: this checks that `just bench` works, not how fast the service is.
The run includes `--against HEAD` (served from this interpreter, so no venv is built), a
small `--prefill` and `--pooler` (where pgbouncer is installed), so that every section and
every key of benchmarks.json is produced.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from h2s_bench.pooler import find_pgbouncer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

JSON_KEYS = {
    "revision",
    "machine",
    "against",
    "overhead_in_healthz_answers_64",
    "statemachine_ms_per_checkout",
    "new_over_ceiling_a",
    "replays_over_ceiling_b",
    "round_trips",
    "overhead_p99_ms_stripe_300ms_64_clients",
    "overhead_p99_ms_stripe_300ms_64_clients_from_start",
    "rss_mb_max",
    "prefill",
    "pooler",
}
PREFILL_KEYS = {
    "rows",
    "new_rate_ratio_64",
    "replay_p99_ratio",
    "portal_p99_ms",
    "timeline_p99_ms",
    "reconcile_pass_s",
    "doctor_s",
}


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


@pytest.mark.skipif(git("rev-parse").returncode != 0, reason="--against needs a git checkout")
def test_bench_runs_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    # The work directory is a temporary one under TMPDIR: removed at the end, worktree
    # included, and every process started there can be looked for by that path.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STRIPE_API_BASE")}
    env["TMPDIR"] = str(tmp)
    # As `just bench` runs it: the harness is not installed, it runs from src/.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "h2s_bench",
            "--quick",
            "--out",
            str(out),
            "--against",
            "HEAD",
            "--against-python",
            sys.executable,
            "--prefill",
            "2000",
            "--pooler",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    printed = run.stdout
    assert "| workload | figures |" in printed
    for row in (
        "new checkouts, Stripe latency 0, 1 client",
        "new checkouts, Stripe latency 0, 64 clients",
        "new checkouts, Stripe latency 300 ms, 256 clients",
        "idempotent replays of stored checkouts, 64 clients",
        "ceiling A: the statements of one new checkout",
        "ceiling A-sql",
        "ceiling B: GET /healthz",
        "database round trips per new checkout",
        "peak RSS per server worker",
        "new checkouts / ceiling A",
        "1 server, 2 granian workers",
        "2 replicas",
        "orders created",
        # the targets
        "new checkouts/s against",
        "replays/s against",
        "the worker's overhead per new checkout in /healthz answers",
        "python-statemachine's CPU per new checkout",
        "database round trips per replay",
        "overhead p99 over 300 ms of Stripe latency, 64 clients",
        "new checkouts / ceiling A, 16 clients",
        "portal page p99",
        "a checkout's timeline p99, prefilled",
        "one reconciler pass, prefilled",
        "the doctor's database checks, prefilled",
        # tracing off, on at 100% and at 10% (issue 27)
        "## What tracing costs",
        "| on, 100% sampled |",
        "| on, 10% sampled |",
        "100% sampled within 25%",
        # side by side with HEAD
        "## Side by side with",
        "this code / ",
        "worker CPU ms per answer: new checkouts, Stripe 0 ms, 64 clients",
        "database round trips per replay, pg_stat_statements",
        # the prefill
        "2,000 checkouts prefilled",
        "portal: GET /api/portal/jobs?status=queued p99",
        "timeline: GET /api/checkouts/{id}/timeline p99",
        "`h2s-checkout doctor` (no provider)",
        # the prefill's ratios, side by side with an unfilled database
        "| figure | unfilled | prefilled | prefilled / unfilled |",
        "worker CPU ms per replay",
    ):
        assert row in printed, f"missing row {row!r}"
    assert "Substitution self-check: ok" in printed
    # Ceiling B and the replays alternate, B R R B, each side pooled over its two blocks.
    blocks = [
        "B" if "healthz" in line else "R"
        for line in (run.stdout + run.stderr).splitlines()
        if line.startswith(("[bench] ceiling B: GET /healthz", "[bench] replays of stored"))
    ]
    assert blocks == ["B", "R", "R", "B"]
    # Tracing's three servers take the load mirrored: off, 100%, 10%, 10%, 100%, off.
    modes = [
        line.split("tracing ", 1)[1].split(", 64 clients")[0]
        for line in run.stdout.splitlines()
        if line.startswith("[bench] new checkouts, tracing ")
    ]
    assert modes == [
        "off",
        "on, 100% sampled",
        "on, 10% sampled",
        "on, 10% sampled",
        "on, 100% sampled",
        "off",
    ]
    # So do new checkouts and ceiling A at each concurrency: N A A N.
    for clients, tasks in (("1 client", "1 task"), ("64 clients", "64 tasks")):
        pairs = [
            "N" if line.startswith("[bench] new checkouts") else "A"
            for line in (run.stdout + run.stderr).splitlines()
            if line.startswith(
                (f"[bench] new checkouts, Stripe 0 ms, {clients}:", f"[bench] ceiling A, {tasks}:")
            )
        ]
        assert pairs == ["N", "A", "A", "N"], clients

    # Direct and through PgBouncer alternate too, D P P D; without pgbouncer, the reason.
    if find_pgbouncer() is not None:
        assert "## Behind PgBouncer in transaction mode" in printed
        sides = [
            line.split(":", 1)[0].rsplit(", ", 1)[1]
            for line in (run.stdout + run.stderr).splitlines()
            if line.startswith("[bench] new checkouts, 64 clients, ")
        ]
        assert sides == ["direct", "pooled", "pooled", "direct"]
    else:
        assert "pooler workload skipped: no pgbouncer here" in printed

    figures = json.loads((out / "benchmarks.json").read_text())
    assert set(figures) >= JSON_KEYS
    assert figures["revision"] == git("rev-parse", "HEAD").stdout.strip()
    assert figures["against"]["revision"] == figures["revision"]
    assert {"new_ratio_64", "replay_ratio_64"} <= set(figures["against"])
    assert set(figures["new_over_ceiling_a"]) >= {"16", "64"}
    assert set(figures["round_trips"]) == {"new", "replay"}
    assert set(figures["prefill"]) >= PREFILL_KEYS
    assert figures["prefill"]["rows"] == 2000
    side_by_side = figures["prefill"]["side_by_side"]
    assert side_by_side["blocks"] == ["unfilled", "prefilled", "prefilled", "unfilled"]
    for side in ("unfilled", "prefilled"):
        assert side_by_side[side]["new_per_s_64"] > 0
        assert side_by_side[side]["replay_p99_ms_64"] > 0

    if find_pgbouncer() is not None:
        for side in ("direct", "pgbouncer"):
            assert figures["pooler"][side]["per_s"] > 0
        assert figures["pooler"]["pgbouncer_over_direct"] > 0
    else:
        assert figures["pooler"] is None

    written = (out / "benchmarks.md").read_text()
    assert "<!-- bench:begin" in written
    assert "<!-- bench:end -->" in written
    assert "| workload | figures |" in written
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "benchmarks.png").stat().st_size > 0
    # Every process the harness started is gone (servers, emulator, PostgreSQL), and so
    # are its work directory and the worktree of --against.
    leftovers = subprocess.run(["pgrep", "-f", str(tmp)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
    assert list(tmp.iterdir()) == []
    assert str(tmp) not in git("worktree", "list", "--porcelain").stdout
