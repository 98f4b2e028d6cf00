"""The processes under test: PostgreSQL, the Stripe emulator and `h2s-checkout serve`.

Everything listens on 127.0.0.1. Every wait is bounded; every process started here is
stopped here, by its own id (servers run in a session of their own so that their granian
workers go with them).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil

from h2s_checkout.settings import EMULATOR_API_KEY

# The admin token of the throwaway servers the bench starts on 127.0.0.1.
BENCH_ADMIN_TOKEN = "bench-admin-token-0123456789"  # noqa: S105
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


class StackError(RuntimeError):
    """A process of the stack did not start or answer in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


def _stop_process(proc: subprocess.Popen[bytes], *, group: bool, timeout_s: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; ``group``: the process's own session."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
        return
    except subprocess.TimeoutExpired:
        pass
    if group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait(timeout=10)


class Database:
    """The given PostgreSQL (``dsn``), or an embedded one under ``data_dir`` that we own."""

    def __init__(self, dsn: str | None, data_dir: Path, *, durable: bool) -> None:
        self._given = dsn
        self._data_dir = data_dir
        self.durable = durable
        self._embedded: object | None = None
        self.dsn = dsn or ""
        self.postmaster_pid: int | None = None

    @property
    def embedded(self) -> bool:
        return self._given is None

    def start(self) -> str:
        if self._given is not None:
            return self._given
        from h2s_checkout.store.embedded import EmbeddedPostgres

        pg = EmbeddedPostgres(self._data_dir, durable=self.durable)
        self.dsn = pg.start()
        self._embedded = pg
        pid_line = (self._data_dir / "postmaster.pid").read_text().splitlines()[0]
        self.postmaster_pid = int(pid_line)
        return self.dsn

    def sibling_dsn(self, name: str) -> str:
        """The DSN of database ``name`` on the same server."""
        parts = urlsplit(self.dsn)
        return urlunsplit(parts._replace(path="/" + name))

    async def create_sibling(self, name: str) -> str:
        """A new, empty database ``name`` on the same server (dropped first if it exists:
        the name is the bench's own); its DSN."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"not a plain database name: {name!r}")
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f'drop database if exists "{name}" with (force)')
            await conn.execute(f'create database "{name}"')
        finally:
            await conn.close()
        return self.sibling_dsn(name)

    async def drop_sibling(self, name: str) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f'drop database if exists "{name}" with (force)')
        finally:
            await conn.close()

    def stop(self) -> None:
        from h2s_checkout.store.embedded import EmbeddedPostgres

        if isinstance(self._embedded, EmbeddedPostgres):
            self._embedded.stop()
            self._embedded = None


class EmulatorProcess:
    """`python -m stripe_checkout_emulator` on a free port, as a separate process,
    driven through its admin API with the admin token made here."""

    def __init__(self, log_dir: Path, latency_ms: float = 0.0) -> None:
        self.log_path = log_dir / "stripe-emulator.log"
        self.latency_ms = latency_ms
        self.admin_token = "emu_admin_" + secrets.token_hex(24)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 30) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("H2S_", "STRIPE_"))}
        # In its environment, not its arguments: a command line is readable by every user.
        env["H2S_EMULATOR_ADMIN_TOKEN"] = self.admin_token
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "stripe_checkout_emulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--latency-ms",
                    str(self.latency_ms),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"stripe emulator exited:\n{_tail(self.log_path)}")
            match = _LISTENING.search(_tail(self.log_path, 20000))
            if match:
                self.url = match.group(1)
                return self.url
            time.sleep(0.05)
        raise StackError(f"stripe emulator not listening after {timeout_s} s")

    def _admin(self, path: str, body: dict[str, object] | None = None) -> None:
        answer = httpx.post(
            f"{self.url}{path}",
            json=body or {},
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
        )
        answer.raise_for_status()

    def set_latency(self, latency_ms: float) -> None:
        self._admin("/_emulator/config", {"latency_ms": latency_ms})
        self.latency_ms = latency_ms

    def reset(self) -> None:
        """Forget sessions, keys and logged requests (the latency setting stays)."""
        self._admin("/_emulator/reset")

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, group=False)


class ServerProcess:
    """`h2s-checkout serve --workers N` with DATABASE_URL and STRIPE_API_BASE set: granian
    serving the app exactly as in production, nothing embedded.

    ``python`` is this interpreter, or another install's (an older revision's venv, run
    from its worktree ``cwd`` with PYTHONPATH and the like left out of its environment).
    """

    def __init__(
        self,
        database_url: str,
        stripe_base: str,
        log_dir: Path,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        python: str | Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log_path = log_dir / f"server-{self.port}.log"
        self.python = str(python or sys.executable)
        self.cwd = cwd
        other_install = python is not None and Path(self.python) != Path(sys.executable)
        # OTEL_ too: a server traces only when its workload says so (tracing_cost.py).
        dropped = ("H2S_", "STRIPE_", "OTEL_") + (
            ("PYTHON", "VIRTUAL_ENV") if other_install else ()
        )
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(dropped)},
            "DATABASE_URL": database_url,
            "STRIPE_API_BASE": stripe_base,
            "STRIPE_API_KEY": EMULATOR_API_KEY,
            "H2S_ADMIN_TOKEN": BENCH_ADMIN_TOKEN,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PUBLIC_BASE_URL": self.url,
            "H2S_LOG_FORMAT": "json",
            # Every request comes from the load generator's one address: a per-address limit
            # would refuse it. The per-email limit stays on (each new checkout has an email
            # of its own), so phase 1 runs its limit check and count as in production.
            "H2S_LIMIT_CHECKOUTS_PER_MINUTE_IP": "0",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 60) -> ServerProcess:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "h2s_checkout", "serve", "--workers", str(self.workers)],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"server exited early:\n{_tail(self.log_path)}")
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready and len(self.worker_pids()) >= self.workers:
                return self
            time.sleep(0.1)
        raise StackError(f"server not ready in {timeout_s} s:\n{_tail(self.log_path)}")

    def worker_pids(self) -> list[int]:
        """granian's worker processes: the children of the `serve` process."""
        if self.proc is None:
            return []
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=False)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, group=True)


# -- CPU and memory accounting ------------------------------------------------------------


def _tree_cpu_s(pid: int, *, tree: bool = True) -> float:
    """CPU seconds of a process and (``tree``) its reaped children and live descendants."""
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        if not tree:
            return t.user + t.system
        total = t.user + t.system + t.children_user + t.children_system
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
        return total
    except psutil.Error:
        return 0.0


def _system_busy_s() -> float:
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return sum(t) - idle


@dataclass
class Autovacuum:
    """PostgreSQL's autovacuum workers over one workload: the cores they used (a part of
    "postgres") and the share of the samples in which one was at work."""

    cores: float
    share: float

    def describe(self) -> str:
        return f"{self.cores:.2f} cores, at work {100 * self.share:.0f}% of the time"


@dataclass
class CpuSplit:
    """Cores used per component over one workload (1.0 = one core fully busy)."""

    seconds: float
    cores: dict[str, float]
    autovacuum: Autovacuum | None = None

    def describe(self) -> str:
        text = ", ".join(f"{k} {v:.2f}" for k, v in self.cores.items())
        if self.autovacuum is not None:
            text += f" (of postgres, autovacuum: {self.autovacuum.describe()})"
        return text


class AutovacuumWatch:
    """Samples a postmaster's children every ``interval_s`` for autovacuum workers (their
    process title says so) and the CPU each has used. A worker is a short-lived process
    that PostgreSQL starts when a table has changed enough: the CPU it uses while a
    workload runs competes with the service on the same cores, and the meter's
    "postgres" only shows it as more PostgreSQL per answer.

    A worker that ends between two samples is counted by what the postmaster's ended
    children used meanwhile (the kernel adds their CPU to their parent's when they
    exit); another child ending in the same interval would be counted with it. At
    least what it had used when last seen is counted: a worker reaped after a sample
    read the postmaster's times but before it listed its children is gone with nothing
    of it in those times yet.
    """

    def __init__(self, postmaster_pid: int, interval_s: float = 0.1) -> None:
        self._pid = postmaster_pid
        self._interval_s = interval_s
        self._others: set[int] = set()  # children already seen to be something else
        self._first: dict[int, float] = {}  # CPU a worker had used when first seen
        self._last: dict[int, float] = {}  # ... when last seen, while it runs
        self._used = 0.0  # by the workers that ended
        self._reaped = 0.0
        self._samples = 0
        self._busy = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autovacuum-watch", daemon=True)
        self._t0 = 0.0
        self.result = Autovacuum(0.0, 0.0)

    def _read(self) -> tuple[dict[int, float], set[int], float]:
        """The live workers' CPU seconds, every child's pid, and the CPU seconds of the
        children the postmaster has reaped."""
        found: dict[int, float] = {}
        try:
            postmaster = psutil.Process(self._pid)
            times = postmaster.cpu_times()
            children = postmaster.children()
        except psutil.Error:
            return found, set(self._last), self._reaped
        for child in children:
            if child.pid in self._others:
                continue
            with contextlib.suppress(psutil.Error):
                title = " ".join(child.cmdline())
                if "autovacuum worker" in title:
                    t = child.cpu_times()
                    found[child.pid] = t.user + t.system
                elif "autovacuum" not in title:
                    self._others.add(child.pid)
        pids = {child.pid for child in children}
        return found, pids, times.children_user + times.children_system

    def _sample(self) -> None:
        workers, pids, reaped = self._read()
        self._samples += 1
        self._busy += bool(workers)
        # Ended means reaped: a worker that exited but is not yet reaped (a zombie) is
        # still a child, and its CPU is not yet in the postmaster's.
        ended = [pid for pid in self._last if pid not in pids]
        if ended:
            # Their whole CPU is now in the postmaster's ended children's, unless they were
            # reaped between this read's two parts (the postmaster's times, then its
            # children): then what they had used when last seen is what is known.
            self._used += max(
                reaped - self._reaped - sum(self._first[p] for p in ended),
                sum(self._last[p] - self._first[p] for p in ended),
            )
            for pid in ended:
                del self._first[pid], self._last[pid]
        self._reaped = reaped
        for pid, cpu in workers.items():
            self._first.setdefault(pid, 0.0)  # started since the last sample
            self._last[pid] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def __enter__(self) -> AutovacuumWatch:
        # Workers already at work count from what they had used by now.
        self._first, _, self._reaped = self._read()
        self._last = dict(self._first)
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        used = self._used + sum(self._last[pid] - self._first[pid] for pid in self._last)
        self.result = Autovacuum(used / elapsed, self._busy / max(self._samples, 1))


def pooled_cpu(splits: Iterable[CpuSplit]) -> CpuSplit:
    """Cores averaged over several workloads, each weighted by its length."""
    splits = list(splits)
    seconds = sum(s.seconds for s in splits)
    names = {name for s in splits for name in s.cores}
    cores = {
        name: sum(s.cores.get(name, 0.0) * s.seconds for s in splits) / max(seconds, 1e-9)
        for name in names
    }
    watched = [(s.autovacuum, s.seconds) for s in splits if s.autovacuum is not None]
    autovacuum = None
    if watched and len(watched) == len(splits):  # every workload watched, or none counts
        autovacuum = Autovacuum(
            sum(a.cores * t for a, t in watched) / max(seconds, 1e-9),
            sum(a.share * t for a, t in watched) / max(seconds, 1e-9),
        )
    return CpuSplit(seconds, cores, autovacuum)


class CpuMeter:
    """Snapshot the CPU time of named process trees before and after a workload; the
    groups named in ``solo`` count their processes alone (this one: the generator)."""

    def __init__(
        self,
        groups: Mapping[str, Iterable[int]],
        solo: Iterable[str] = (),
        *,
        autovacuum_of: int | None = None,
    ) -> None:
        self._groups = {name: list(pids) for name, pids in groups.items()}
        self._solo = set(solo)
        self._start: dict[str, float] = {}
        self._t0 = 0.0
        # The postmaster whose autovacuum workers to watch (a part of "postgres").
        self._watch = AutovacuumWatch(autovacuum_of) if autovacuum_of is not None else None

    def _sample(self) -> dict[str, float]:
        sample = {
            name: sum(_tree_cpu_s(p, tree=name not in self._solo) for p in pids)
            for name, pids in self._groups.items()
        }
        sample["_system"] = _system_busy_s()
        return sample

    def __enter__(self) -> CpuMeter:
        if self._watch is not None:
            self._watch.__enter__()
        self._start = self._sample()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        cores = {k: (end[k] - self._start[k]) / elapsed for k in end if k != "_system"}
        system = (end["_system"] - self._start["_system"]) / elapsed
        cores["other"] = max(system - sum(cores.values()), 0.0)
        autovacuum = None
        if self._watch is not None:
            self._watch.__exit__(*exc)
            autovacuum = self._watch.result
        self.result = CpuSplit(elapsed, cores, autovacuum)

    result: CpuSplit


@dataclass
class RssSampler:
    """A background thread sampling the RSS of server workers; keeps the peak per pid."""

    interval_s: float = 0.25
    peaks_mb: dict[int, float] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    _pids: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def watch(self, pids: Iterable[int], label: str) -> None:
        with self._lock:
            for pid in pids:
                if pid not in self._pids:
                    self._pids.append(pid)
                    self.labels[pid] = label
        self._sample()

    def _sample(self) -> None:
        with self._lock:
            pids = list(self._pids)
        for pid in pids:
            try:
                rss = psutil.Process(pid).memory_info().rss / 2**20
            except psutil.Error:
                continue
            with self._lock:
                self.peaks_mb[pid] = max(self.peaks_mb.get(pid, 0.0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
