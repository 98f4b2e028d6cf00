"""The pieces of `--against REV`: the revision, its worktree, its cached venv, the order of
the blocks and how a side's blocks are pooled. (The whole comparison runs in
test_bench_runs.py, against HEAD with this interpreter, so that no venv is built.)"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from h2s_bench import against, compare, load
from h2s_bench.stack import CpuSplit, pooled_cpu

REPO = Path(__file__).resolve().parents[2]


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


needs_git = pytest.mark.skipif(
    subprocess.run(["git", "-C", str(REPO), "rev-parse"], capture_output=True).returncode != 0,
    reason="not a git checkout",
)


@needs_git
def test_a_revision_resolves_to_its_full_sha() -> None:
    head = git("rev-parse", "HEAD")
    assert against.resolve("HEAD", REPO) == head
    assert against.resolve(head[:10], REPO) == head
    with pytest.raises(against.AgainstError):
        against.resolve("no-such-revision-anywhere", REPO)
    with pytest.raises(against.AgainstError):
        against.resolve("--all", REPO)


@needs_git
def test_the_worktree_holds_that_revision_and_goes_away(tmp_path: Path) -> None:
    head = git("rev-parse", "HEAD")
    with against.installed("HEAD", tmp_path, python=Path(sys.executable)) as inst:
        assert inst.sha == head
        committed = git("ls-tree", "--name-only", head, "db/migrations/").splitlines()
        assert sorted(p.name for p in inst.migrations.glob("*.sql")) == sorted(
            Path(f).name for f in committed
        )
        assert git("-C", str(inst.worktree), "rev-parse", "HEAD") == head
        assert inst.env == {"H2S_MIGRATIONS_DIR": str(inst.worktree / "db" / "migrations")}
        assert inst.versions.get("asyncpg")
        worktree = inst.worktree
    assert not worktree.exists()
    assert str(worktree) not in git("worktree", "list", "--porcelain")


def test_a_cached_venv_is_reused_and_a_half_built_one_is_not(tmp_path: Path) -> None:
    sha = "0" * 40
    python = tmp_path / sha / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    (tmp_path / sha / "installed").write_text(sha)
    found, reused = against.cached_venv(sha, tmp_path / "nowhere", tmp_path / "log", tmp_path)
    assert (found, reused) == (python, True)

    (tmp_path / sha / "installed").unlink()  # an install that was cut short
    with pytest.raises(against.AgainstError, match="failed"):
        # Rebuilt from a source that does not exist: pip fails, and says so.
        against.cached_venv(sha, tmp_path / "nowhere", tmp_path / "log", tmp_path)
    assert not (tmp_path / sha / "installed").exists()


def test_the_environment_of_another_install_points_at_nothing_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere/src")
    monkeypatch.setenv("H2S_ADMIN_TOKEN", "x")
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    env = against.clean_env({"DATABASE_URL": "postgresql://bench/db"})
    assert "PYTHONPATH" not in env
    assert "H2S_ADMIN_TOKEN" not in env
    assert env["DATABASE_URL"] == "postgresql://bench/db"


def test_blocks_alternate_so_that_each_side_runs_first_as_often() -> None:
    assert compare.block_order(2) == ["current", "against", "against", "current"]
    order = compare.block_order(4)
    assert Counter(order) == {"current": 4, "against": 4}
    assert [order[i] for i in range(0, 8, 2)] == ["current", "against", "current", "against"]


def test_a_side_pools_its_blocks() -> None:
    a = load.Outcome("w", 64, elapsed_s=2.0, ok=100, latencies_ms=[10.0] * 100)
    b = load.Outcome("w", 64, elapsed_s=6.0, ok=500, latencies_ms=[30.0] * 500)
    pooled = load.pooled("w", [a, b])
    assert pooled.rate == 600 / 8.0
    assert pooled.pct(50) == 30.0
    cpu = pooled_cpu([CpuSplit(2.0, {"server": 1.0}), CpuSplit(6.0, {"server": 0.5})])
    assert cpu.cores["server"] == pytest.approx((2.0 + 3.0) / 8.0)
    side = compare.Side(
        "x", {"w": [a, b]}, {"w": [CpuSplit(2.0, {"server": 1.0}), CpuSplit(6.0, {"server": 0.5})]}
    )
    # 5 CPU seconds over 600 answers.
    assert side.worker_ms("w") == pytest.approx(5000 / 600)
