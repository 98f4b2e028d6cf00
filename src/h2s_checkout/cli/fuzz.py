"""`just fuzz`: schemathesis against a throwaway embedded stack, never a live one.

    python -m h2s_checkout.cli.fuzz [--config-file schemathesis.toml] [st run options...]

The fuzzer does what the schema allows with the token it is given: with a live stack's
bootstrap token it revoked every API key and subscribed endpoints by the dozen. So this
starts `h2s-checkout serve` on a temporary data directory (its own embedded PostgreSQL,
emulator and admin token, on a free port, with nothing configured from the caller's
environment), runs `st run` on its schema with that token, and removes it all after.
Event delivery and the reconciler are off in it: the endpoints the fuzzer subscribes are
never called, and nothing but the fuzzer's requests changes its data.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_TIMEOUT_S = 120.0
# Variables that would point the throwaway stack at something real.
_CALLERS_OWN = ("H2S_", "STRIPE_", "DATABASE_URL", "PORT", "HOST", "PUBLIC_BASE_URL")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _st() -> str:
    beside = Path(sys.executable).parent / "st"
    return str(beside) if beside.exists() else (shutil.which("st") or "st")


def _wait_ready(url: str, serve: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            raise SystemExit(f"fuzz: the throwaway serve exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"fuzz: the throwaway serve was not ready in {READY_TIMEOUT_S:g} s")


def _stop(serve: subprocess.Popen[bytes]) -> None:
    if serve.poll() is None:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)


def run(config_file: Path, st_args: list[str]) -> int:
    from h2s_checkout.store.embedded import EmbeddedPostgres

    work = Path(tempfile.mkdtemp(prefix="h2s-fuzz-"))
    data = work / "data"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CALLERS_OWN)}
    env |= {
        "H2S_DATA_DIR": str(data),
        "PORT": str(port),
        "H2S_LOG_FORMAT": "json",
        "H2S_EVENTS_POLL_S": "0",
        "H2S_RECONCILE_INTERVAL_S": "0",
        # One address sends every request: the limits would answer most checkouts 429.
        "H2S_LIMIT_CHECKOUTS_PER_MINUTE_IP": "0",
        "H2S_LIMIT_CHECKOUTS_PER_MINUTE_EMAIL": "0",
        "H2S_LIMIT_LOGIN_FAILURES": "0",
    }
    print(f"fuzz: a throwaway stack in {work} on {url}", flush=True)
    with log.open("ab") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "h2s_checkout", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(url, serve, log)
        token = (data / "admin-token").read_text().strip()
        done = subprocess.run(
            [
                _st(),
                "--config-file",
                str(config_file),
                "run",
                f"{url}/schema/openapi.json",
                *st_args,
            ],
            env={**env, "H2S_ADMIN_TOKEN": token},
            cwd=work,  # its reports stay with the stack, not in the checkout
            check=False,
        )
        return done.returncode
    finally:
        _stop(serve)
        if (data / "postgres").exists():
            EmbeddedPostgres(data / "postgres").stop()  # if the serve left it running
        shutil.rmtree(work, ignore_errors=True)
        print("fuzz: the throwaway stack is stopped and removed", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m h2s_checkout.cli.fuzz",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--config-file",
        type=Path,
        default=Path("schemathesis.toml"),
        help="schemathesis settings (default: %(default)s in the current directory)",
    )
    args, st_args = parser.parse_known_args(argv)
    config = args.config_file.resolve()
    if not config.exists():
        parser.error(f"no {config}: run it from the repository, or give --config-file")
    return run(config, st_args)


if __name__ == "__main__":
    sys.exit(main())
