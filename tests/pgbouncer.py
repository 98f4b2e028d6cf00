"""A real PgBouncer (Debian's package) in transaction mode in front of a test database."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").is_file() else None
)
INSTALL_LINE = "apt-get install pgbouncer"
# PgBouncer refuses to run as root; as root it is started as this user (`-u`), the one
# the embedded PostgreSQL already runs as.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """PgBouncer on a free loopback port, pooling ``backend_dsn``'s server by transaction."""

    def __init__(self, backend_dsn: str, work_dir: Path, *, pool_size: int = 20) -> None:
        if PGBOUNCER is None:
            raise FileNotFoundError(f"no pgbouncer here: {INSTALL_LINE}")
        self.backend_dsn = backend_dsn
        self.work_dir = work_dir
        self.pool_size = pool_size
        self.port = free_port()
        self.log_path = work_dir / "pgbouncer.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def dsn_for(self, backend_dsn: str) -> str:
        """The same database, user and options as ``backend_dsn``, through this PgBouncer."""
        parts = urlsplit(backend_dsn)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.backend_dsn)

    def start(self, timeout_s: float = 15) -> PgBouncer:
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
        args = [str(PGBOUNCER)]
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
                raise RuntimeError(f"pgbouncer exited:\n{self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer not listening in {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # PgBouncer's "shut down now"
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
