"""Contract fuzzing: schemathesis drives every operation of our own /schema over real HTTP.

Its default checks, with the project's schemathesis.toml: no 5xx; every answer's status,
headers, content type and body as the schema lists them; every request the schema allows
accepted (save the refusals the config names, with its reasons) and every request it
forbids refused. Run through schemathesis's own CLI, as a person runs it: its pytest
plugin does not load under pytest 9.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from servers import ServerProcess
from support import ADMIN_TOKEN

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def st_binary() -> str:
    beside = Path(sys.executable).parent / "st"
    return str(beside) if beside.exists() else (shutil.which("st") or "st")


def test_every_operation_keeps_its_contract(database_url, emulator, db, tmp_path):
    server = ServerProcess(
        database_url,
        emulator.base_url,
        tmp_path,
        H2S_RECONCILE_INTERVAL_S="0",
        # Generated event endpoints may name any public address: nothing is sent to them.
        H2S_EVENTS_POLL_S="0",
    ).start()
    try:
        result = subprocess.run(
            [
                st_binary(),
                "--config-file",
                str(ROOT / "schemathesis.toml"),
                "run",
                f"{server.url}/schema/openapi.json",
                # Reproducible in CI; a person running it by hand gets fresh inputs each time.
                "--seed",
                "20261126",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,  # its report and cache directories stay out of the checkout
            env={**os.environ, "NO_COLOR": "1", "H2S_ADMIN_TOKEN": ADMIN_TOKEN},
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    # The run covered the operations and phases it is meant to (a config that selects
    # nothing, or a schema served empty, would pass without testing anything).
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", result.stdout)
    assert selected, result.stdout[-3000:]
    assert selected[1] == selected[2] != "0", selected[0]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in result.stdout, result.stdout[-3000:]
