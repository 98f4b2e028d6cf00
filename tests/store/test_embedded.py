"""Real-process tests for the embedded PostgreSQL controller."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest

from h2s_checkout.store.embedded import (
    PORT_FILE,
    EmbeddedPostgres,
    EmbeddedPostgresError,
    has_pg_stat_statements,
)

SRC = Path(__file__).resolve().parents[2] / "src"

MakePg = Callable[..., EmbeddedPostgres]


def _query(dsn: str, sql: str, **connect: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(dsn, **connect)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def _execute(dsn: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _postmasters(data_dir: Path) -> list[psutil.Process]:
    """Live postmasters for data_dir (backends rewrite their titles, so only they match)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or "-D" not in cmdline:
            continue
        if cmdline[cmdline.index("-D") + 1] == str(data_dir):
            found.append(proc)
    return found


def _zombie_children() -> list[psutil.Process]:
    zombies = []
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.append(child)
        except psutil.NoSuchProcess:
            pass
    return zombies


@pytest.fixture
def make_pg() -> Iterator[MakePg]:
    created: list[EmbeddedPostgres] = []

    def make(data_dir: Path, **kwargs: Any) -> EmbeddedPostgres:
        kwargs.setdefault("durable", False)
        pg = EmbeddedPostgres(data_dir, **kwargs)
        created.append(pg)
        return pg

    try:
        yield make
    finally:
        for pg in created:
            try:
                pg.stop("immediate")
            except Exception as err:  # keep stopping the others
                print(f"cleanup of {pg} failed: {err}")
        assert not _zombie_children()


def test_start_query_stop_restart_keeps_data_and_port(make_pg: MakePg, tmp_path: Path) -> None:
    pg = make_pg(tmp_path / "pg")
    assert not pg.is_running()

    dsn = pg.start()
    assert pg.is_running()
    assert dsn == f"postgresql://postgres@127.0.0.1:{pg.port}/h2s"
    assert pg.dsn == dsn
    assert "PostgreSQL 18" in _query(dsn, "select version()")
    assert _query(dsn, "select current_database()") == "h2s"
    assert (pg.data_dir / PORT_FILE).read_text().strip() == str(pg.port)
    assert pg.log_path.is_file()
    _execute(dsn, "create table kept (v text); insert into kept values ('survives restart')")

    pg.stop()
    assert not pg.is_running()
    assert not _postmasters(pg.data_dir)
    pg.stop()  # stopping a stopped server is a no-op

    again = EmbeddedPostgres(pg.data_dir, durable=False)
    assert again.start() == dsn
    assert _query(dsn, "select v from kept") == "survives restart"
    again.stop()


def test_start_is_idempotent_and_reuses_running_server(make_pg: MakePg, tmp_path: Path) -> None:
    pg = make_pg(tmp_path / "pg")
    dsn = pg.start()
    [postmaster] = _postmasters(pg.data_dir)

    assert pg.launched
    other = EmbeddedPostgres(pg.data_dir)
    assert other.start() == dsn
    assert not other.launched
    assert pg.start() == dsn
    assert [p.pid for p in _postmasters(pg.data_dir)] == [postmaster.pid]


def test_immediate_stop_then_start_recovers(make_pg: MakePg, tmp_path: Path) -> None:
    pg = make_pg(tmp_path / "pg")
    dsn = pg.start()
    _execute(dsn, "create table t (v int); insert into t select generate_series(1, 1000)")

    pg.stop("immediate")
    assert not pg.is_running()

    assert pg.start() == dsn
    assert _query(dsn, "select count(*) from t") == 1000
    assert "automatic recovery in progress" in pg.log_path.read_text()


def test_start_survives_sigkill_of_postmaster(
    make_pg: MakePg, tmp_path: Path, subreaper: None
) -> None:
    pg = make_pg(tmp_path / "pg")
    dsn = pg.start()
    [postmaster] = _postmasters(pg.data_dir)
    backends = [p for p in psutil.process_iter() if _is_backend_of(p, pg) and p != postmaster]
    postmaster.kill()
    postmaster.wait(10)
    # Orphaned backends exit on postmaster death; being their subreaper we collect them.
    _, alive = psutil.wait_procs(backends, timeout=10)
    assert not alive

    assert (pg.data_dir / "postmaster.pid").exists()  # stale
    assert not pg.is_running()
    assert pg.start() == dsn
    assert _query(dsn, "select 1") == 1


def _is_backend_of(proc: psutil.Process, pg: EmbeddedPostgres) -> bool:
    try:
        return proc.name() == "postgres" and Path(proc.cwd()) == pg.data_dir
    except psutil.Error:
        return False


def test_settings_for_non_durable_server(make_pg: MakePg, tmp_path: Path) -> None:
    pg = make_pg(tmp_path / "pg")
    dsn = pg.start()
    assert _query(dsn, "show fsync") == "off"
    assert _query(dsn, "show max_connections") == "200"
    assert _query(dsn, "show listen_addresses") == "127.0.0.1"
    assert _query(dsn, "show server_encoding") == "UTF8"
    if has_pg_stat_statements():
        assert _query(dsn, "show shared_preload_libraries") == "pg_stat_statements"
        _execute(dsn, "create extension if not exists pg_stat_statements")
        assert _query(dsn, "select count(*) >= 0 from pg_stat_statements")


def test_durable_by_default_and_context_manager(make_pg: MakePg, tmp_path: Path) -> None:
    pg = make_pg(tmp_path / "pg", durable=True)
    with pg as running:
        assert running is pg
        assert _query(pg.dsn, "show fsync") == "on"
        # Checkpoints far apart under a checkout load (see _server_args).
        assert _query(pg.dsn, "show max_wal_size") == "4GB"
        assert _query(pg.dsn, "show checkpoint_timeout") == "15min"
    assert not pg.is_running()


def test_unix_socket_in_data_dir(make_pg: MakePg, tmp_path: Path) -> None:
    pg = make_pg(tmp_path / "pg")
    pg.start()
    assert pg.socket_dir == pg.data_dir
    assert (pg.data_dir / f".s.PGSQL.{pg.port}").is_socket()
    got = _query(
        "postgresql://postgres@/h2s",
        "select inet_server_addr() is null",
        host=str(pg.socket_dir),
        port=pg.port,
    )
    assert got is True


def test_long_data_dir_moves_socket_to_short_dir(make_pg: MakePg, tmp_path: Path) -> None:
    data_dir = tmp_path / ("x" * 60) / ("y" * 60) / "pg"
    pg = make_pg(data_dir)
    dsn = pg.start()
    assert pg.socket_dir != pg.data_dir
    assert len(str(pg.socket_dir / f".s.PGSQL.{pg.port}")) <= 107
    assert (pg.socket_dir / f".s.PGSQL.{pg.port}").is_socket()
    assert _query(dsn, "select 1") == 1
    got = _query("postgresql://postgres@/h2s", "select 1", host=str(pg.socket_dir), port=pg.port)
    assert got == 1
    pg.stop()
    assert not pg.socket_dir.exists()


def test_taken_port_is_replaced_on_restart(make_pg: MakePg, tmp_path: Path) -> None:
    pg = make_pg(tmp_path / "pg")
    pg.start()
    old_port = pg.port
    assert old_port is not None
    pg.stop()

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen()
        dsn = pg.start()
    assert pg.port != old_port
    assert (pg.data_dir / PORT_FILE).read_text().strip() == str(pg.port)
    assert _query(dsn, "select 1") == 1


def test_explicit_port_in_use_fails_clearly(make_pg: MakePg, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        pg = make_pg(tmp_path / "pg", port=squatter.getsockname()[1], start_timeout=20)
        with pytest.raises(EmbeddedPostgresError):
            pg.start()
    assert not pg.is_running()


def test_two_threads_start_one_server(make_pg: MakePg, tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    servers = [make_pg(data_dir) for _ in range(4)]
    barrier = threading.Barrier(len(servers))
    dsns: list[str] = []
    errors: list[BaseException] = []

    def run(pg: EmbeddedPostgres) -> None:
        try:
            barrier.wait()
            dsns.append(pg.start())
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(pg,)) for pg in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(dsns) == len(servers)
    assert len(set(dsns)) == 1
    assert len(_postmasters(data_dir)) == 1
    assert pg_log_count(servers[0], "database system is ready to accept connections") == 1


def pg_log_count(pg: EmbeddedPostgres, needle: str) -> int:
    return pg.log_path.read_text().count(needle)


_CHILD = """
import json, sys
from pathlib import Path
from h2s_checkout.store.embedded import EmbeddedPostgres
pg = EmbeddedPostgres(Path(sys.argv[1]), durable=False)
print(json.dumps({"dsn": pg.start(), "pid": pg._read_pid_file().pid}), flush=True)
sys.stdin.read()
# Reaps the postmaster if this process spawned it (a no-op stop once it is down).
pg.stop()
"""


def test_two_processes_start_one_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    controller = EmbeddedPostgres(data_dir, durable=False)
    try:
        results = [json.loads(child.stdout.readline()) for child in children if child.stdout]
        assert len(results) == 2
        assert results[0] == results[1]
        assert [p.pid for p in _postmasters(data_dir)] == [results[0]["pid"]]
        assert _query(results[0]["dsn"], "select 1") == 1
        controller.stop()
    finally:
        controller.stop("immediate")
        for child in children:
            child.communicate(timeout=30)
    assert all(child.returncode == 0 for child in children)
    assert not _postmasters(data_dir)


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Adopt orphans so a server outliving its starter can be reaped here, not by PID 1."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_CHILD_SUBREAPER is Linux-only")
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    assert libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(pr_set_child_subreaper, 0, 0, 0, 0)


def test_server_outlives_starter_process(tmp_path: Path, subreaper: None) -> None:
    data_dir = tmp_path / "pg"
    script = (
        "import sys; from pathlib import Path;"
        "from h2s_checkout.store.embedded import EmbeddedPostgres;"
        "print(EmbeddedPostgres(Path(sys.argv[1]), durable=False).start())"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", script, str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    dsn = out.stdout.strip()
    pg = EmbeddedPostgres(data_dir, durable=False)
    try:
        assert pg.is_running()
        assert _query(dsn, "select 1") == 1
        assert pg.start() == dsn
    finally:
        pg.stop()
    assert not pg.is_running()
    assert not _zombie_children()
