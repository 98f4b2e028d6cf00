"""Real `h2s-checkout serve` processes for end-to-end tests: start, wait ready, kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from h2s_checkout.settings import EMULATOR_API_KEY
from support import ADMIN_TOKEN, WEBHOOK_SECRET


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One service process (granian + its worker) on a port of its own."""

    def __init__(self, database_url: str, stripe_base: str, log_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"server-{self.port}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("H2S_", "STRIPE_"))},
            "DATABASE_URL": database_url,
            "STRIPE_API_BASE": stripe_base,
            "STRIPE_API_KEY": EMULATOR_API_KEY,
            "H2S_ADMIN_TOKEN": ADMIN_TOKEN,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PORT": str(self.port),
            "H2S_LOG_FORMAT": "json",
            "H2S_STRIPE_TIMEOUT_S": "5",
            # Tests send many checkouts from one address; tests of the limits set them.
            "H2S_LIMIT_CHECKOUTS_PER_MINUTE_IP": "0",
            "H2S_LIMIT_CHECKOUTS_PER_MINUTE_EMAIL": "0",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "h2s_checkout", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # SIGKILL reaches granian's worker too
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout_s} s")

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


class EmbeddedServe:
    """`h2s-checkout serve` with nothing configured: PostgreSQL and the Stripe emulator
    embedded under `data_dir`. Restartable on the same port and data dir."""

    def __init__(self, data_dir: Path, log_name: str = "serve.log") -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / log_name
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("H2S_", "STRIPE_")) and k != "DATABASE_URL"
            },
            "H2S_DATA_DIR": str(data_dir),
            "PORT": str(self.port),
            "H2S_LOG_FORMAT": "json",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90) -> EmbeddedServe:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "h2s_checkout", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # SIGKILL reaches granian's worker too
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve not ready in {timeout_s} s")

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An `h2s-checkout` command beside this serve, on the same data dir."""
        return subprocess.run(
            [sys.executable, "-m", "h2s_checkout", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def kill(self) -> None:
        """SIGKILL serve and its worker: no cleanup runs. The embedded PostgreSQL, in a
        session of its own, lives on, as after a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        """Stop serve, and the embedded PostgreSQL a killed serve left running."""
        from h2s_checkout.store.embedded import EmbeddedPostgres

        self.stop()
        if (self.data_dir / "postgres").exists():
            EmbeddedPostgres(self.data_dir / "postgres").stop()
