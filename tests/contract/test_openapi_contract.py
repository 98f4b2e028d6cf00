"""Contract fuzzing: schemathesis drives every operation of our own /schema over real HTTP.

No answer may be a 5xx, and every answer must match the schema (status codes, headers,
content type and body). Run through schemathesis's own CLI: its pytest plugin does not
load under pytest 9.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from servers import ServerProcess
from support import ADMIN_TOKEN

pytestmark = pytest.mark.slow


def st_binary() -> str:
    beside = Path(sys.executable).parent / "st"
    return str(beside) if beside.exists() else (shutil.which("st") or "st")


def test_every_operation_answers_within_its_contract(database_url, emulator, db, tmp_path):
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
                "run",
                f"{server.url}/schema/openapi.json",
                "--checks",
                "all",
                # Valid-looking carts may name SKUs that do not exist (422), and signed
                # webhook bodies cannot be generated: those refusals are correct answers.
                "--exclude-checks",
                "positive_data_acceptance",
                "--header",
                f"Authorization: Bearer {ADMIN_TOKEN}",
                "--max-examples",
                "40",
                "--seed",
                "20261126",
                "--request-timeout",
                "30",
                "--suppress-health-check",
                "all",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "NO_COLOR": "1"},
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
