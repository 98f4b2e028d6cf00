"""`h2s-checkout smoke` passes against a server it starts, and against a given base URL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from h2s_checkout.cli.smoke import throwaway_serve

pytestmark = pytest.mark.slow


def run_smoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "h2s_checkout", "smoke", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env or dict(os.environ),
    )


ROOT = Path(__file__).resolve().parents[2]


def run_just_smoke(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Through the justfile's recipe, as the README shows it."""
    just = Path(sys.executable).parent / "just"
    return subprocess.run(
        [str(just), "smoke", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env={**env, "PYTHON": sys.executable},
    )


def test_just_smoke_never_prints_the_token_it_is_given():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there
    secret = "h2s_key_SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeC"
    env = {k: v for k, v in os.environ.items() if k != "H2S_ADMIN_TOKEN"}

    unreachable = run_just_smoke(closed, "-n", "1", "--token", secret, env=env)

    assert unreachable.returncode == 1
    assert "cannot reach" in unreachable.stderr
    assert secret not in unreachable.stdout + unreachable.stderr
    assert "SeCrEt" not in unreachable.stdout + unreachable.stderr


def test_smoke_starts_the_embedded_stack_and_passes():
    result = run_smoke("-n", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed: 3/3" in result.stdout


def test_smoke_against_a_live_base_url_needs_the_token_and_passes_with_it():
    with throwaway_serve() as (base_url, token):
        env = {k: v for k, v in os.environ.items() if k != "H2S_ADMIN_TOKEN"}
        refused = run_smoke(base_url, "-n", "1", env=env)
        assert refused.returncode == 2
        wrong = run_smoke(base_url, "-n", "2", "--token", "not-the-token-0123456789", env=env)
        assert wrong.returncode == 1
        assert "Passed: 0/2" in wrong.stdout
        passed = run_just_smoke(base_url, "-n", "2", "--token", token, env=env)
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert "Passed: 2/2" in passed.stdout
        assert token not in passed.stdout + passed.stderr
        assert f"as a token of {len(token)} characters" in passed.stdout
