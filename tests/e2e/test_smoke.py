"""`h2s-checkout smoke` passes against a server it starts, and against a given base URL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from h2s_checkout.smoke import embedded_stack

pytestmark = pytest.mark.slow


def run_smoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "h2s_checkout", "smoke", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env or dict(os.environ),
    )


def test_smoke_starts_the_embedded_stack_and_passes():
    result = run_smoke("-n", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed: 3/3" in result.stdout


def test_smoke_against_a_live_base_url_needs_the_token_and_passes_with_it():
    with embedded_stack() as (base_url, token):
        env = {k: v for k, v in os.environ.items() if k != "H2S_ADMIN_TOKEN"}
        refused = run_smoke(base_url, "-n", "1", env=env)
        assert refused.returncode == 2
        wrong = run_smoke(base_url, "-n", "2", "--token", "not-the-token-0123456789", env=env)
        assert wrong.returncode == 1
        assert "Passed: 0/2" in wrong.stdout
        passed = run_smoke(base_url, "-n", "2", "--token", token, env=env)
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert "Passed: 2/2" in passed.stdout
