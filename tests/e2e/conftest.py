"""Fixtures that run the service as real processes on the shared test database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servers import ServerProcess


@pytest.fixture
def servers(
    database_url: str, emulator, db, stripe, tmp_path: Path
) -> Iterator[Callable[..., ServerProcess]]:
    """A factory of started servers; every one is stopped after the test."""
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        server = ServerProcess(database_url, emulator.base_url, tmp_path, **env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
