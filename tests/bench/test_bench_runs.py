"""The benchmark harness runs end to end and prints its table (`--quick`: tiny counts).

No figure is asserted: this checks that `just bench` works, not how fast the service is.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_bench_runs_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STRIPE_API_BASE")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "h2s_checkout.bench",
            "--quick",
            "--out",
            str(out),
            "--keep-workdir",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
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
    ):
        assert row in printed, f"missing row {row!r}"
    assert "Substitution self-check: ok" in printed

    written = (out / "benchmarks.md").read_text()
    assert "<!-- bench:begin" in written
    assert "<!-- bench:end -->" in written
    assert "| workload | figures |" in written
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "benchmarks.png").stat().st_size > 0
    # Every process the harness started is gone: servers, emulator, PostgreSQL.
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "work")], capture_output=True, text=True
    )
    assert leftovers.stdout.strip() == "", leftovers.stdout
