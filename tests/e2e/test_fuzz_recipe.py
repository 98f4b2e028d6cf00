"""`just fuzz` fuzzes a stack of its own and removes it: whatever the caller's environment
points at (a live database, its bootstrap token) is never what gets fuzzed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_the_fuzz_recipe_runs_on_a_throwaway_stack_and_removes_it(tmp_path):
    live = {
        # A caller's live stack: none of it may reach the fuzzed service or the fuzzer.
        "DATABASE_URL": "postgresql://live.example.invalid/h2s",
        "H2S_ADMIN_TOKEN": "the-live-bootstrap-token-0123456789",
        "STRIPE_API_KEY": "sk_live_not_for_fuzzing",
        "PORT": "8000",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "h2s_checkout.cli.fuzz",
            "--config-file",
            str(ROOT / "schemathesis.toml"),
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            "1",
            "--include-name",
            "GET /api/keys",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, **live, "NO_COLOR": "1"},
    )

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    work = re.search(r"a throwaway stack in (\S+) on http://127\.0\.0\.1:(\d+)", done.stdout)
    assert work, done.stdout[-2000:]
    assert work[2] != "8000"
    assert "1 selected" in done.stdout  # GET /api/keys
    assert "the throwaway stack is stopped and removed" in done.stdout
    assert not Path(work[1]).exists()
    assert list(tmp_path.iterdir()) == []  # nothing left where it ran
