"""The embedded stack: PostgreSQL under ./.data, migrations, the Stripe emulator, started
for what the settings leave unset (the service's one door to the emulator's package).

The first `serve` of a data folder runs its emulator and holds `stripe-emulator.lock`
for as long as it runs; another `serve` of the same folder (a second replica on another
PORT) finds the lock held and joins that emulator through the files the first one wrote,
instead of starting a second emulator over the same state file. Only the holder of the
lock removes what it wrote.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from h2s_checkout.observability.logging import get_logger
from h2s_checkout.settings import EMULATOR_API_KEY, Settings
from h2s_checkout.store.blocking import run_to_end
from h2s_checkout.store.embedded import EmbeddedPostgres
from h2s_checkout.store.migrate import apply_migrations
from h2s_checkout.store.pooler import PoolerMismatch, check_database

if TYPE_CHECKING:
    from stripe_checkout_emulator.server import EmulatorServer

log = get_logger(__name__)


EMULATOR_URL_FILE = "stripe-emulator-url"
# The emulator's port, chosen once and kept: the pay links it handed out name it.
EMULATOR_PORT_FILE = "stripe-emulator-port"
# Its sessions, events, idempotent answers and undelivered webhooks (SQLite).
EMULATOR_STATE_FILE = "stripe-emulator.sqlite3"
# Held (flock) by the process running the folder's emulator; the kernel lets go when it dies.
EMULATOR_LOCK_FILE = "stripe-emulator.lock"
# Its admin API's token (mode 0600): the tests and the operator's `send-event` read it here.
EMULATOR_ADMIN_TOKEN_FILE = "stripe-emulator-admin-token"  # noqa: S105 - a file name
# The webhook signing secret it signs with and every serve of the folder verifies with.
WEBHOOK_SECRET_FILE = "stripe-webhook-secret"  # noqa: S105 - a file name
# How long a second serve waits for the first one's emulator to answer.
JOIN_TIMEOUT_S = 30.0


class StartupError(RuntimeError):
    """The embedded stack cannot start; the message says why and what to do."""


def provider_settings(settings: Settings) -> Settings:
    """For a command beside a running embedded `serve`: point it at that emulator."""
    if settings.payment_mode != "embedded-emulator":
        return settings
    path = settings.data_dir / EMULATOR_URL_FILE
    url = _read(path)
    if url is None or not _lock_held_elsewhere(settings.data_dir / EMULATOR_LOCK_FILE):
        raise RuntimeError(
            "no payment provider: STRIPE_API_BASE and STRIPE_API_KEY are unset and no "
            f"`h2s-checkout serve` of {settings.data_dir} is running its Stripe emulator "
            f"(its address is kept in {path} while it runs)"
        )
    return settings.with_overrides(stripe_api_base=url, stripe_api_key=EMULATOR_API_KEY)


@dataclass
class EmbeddedEmulator:
    """The data folder's emulator: run in this process (``server``), or another serve's
    that this one joined (``server`` None: nothing here to stop or remove)."""

    url: str
    admin_token: str
    webhook_secret: str
    data_dir: Path
    server: EmulatorServer | None = None
    lock_fd: int | None = None

    @property
    def base_url(self) -> str:
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def joined(self) -> bool:
        return self.server is None

    def stop(self) -> None:
        """Stop the emulator this process runs and remove the files that tell others
        where it is; a joined one is left alone."""
        if self.server is not None:
            self.server.stop()
            self.server = None
            (self.data_dir / EMULATOR_URL_FILE).unlink(missing_ok=True)
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # lets go of the lock: the next serve runs it
            self.lock_fd = None


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    embedded_postgres: EmbeddedPostgres | None
    emulator_url: str | None


def _admin_token(settings: Settings, embedded: bool) -> str | None:
    """Production without a token stays closed; the embedded dev stack gets one on disk."""
    if settings.admin_token or not embedded:
        return settings.admin_token
    path = settings.data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    # Hex, not URL-safe base64: a token that began with "-" was taken for an option when
    # passed as `smoke --token TOKEN` (argparse), one start in 64.
    token = secrets.token_hex(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def check_pooler(settings: Settings) -> None:
    """Refuse to start on a database that is not what H2S_DB_POOLER says: a transaction
    pooler nobody declared answers 500s under load (store/pooler.py)."""
    if settings.database_url is None:
        return  # the embedded database: nothing in front of it
    database_url = settings.database_url
    try:
        run_to_end(
            lambda: check_database(
                database_url,
                settings.db_pooler,
                settings.database_direct_url,
                timeout_s=settings.db_timeout_s,
            )
        )
    except PoolerMismatch as exc:
        raise StartupError(str(exc)) from exc


def migrate_database(settings: Settings) -> None:
    """Apply migrations where dbmate's session lock is safe: H2S_DATABASE_DIRECT_URL,
    else DATABASE_URL, under a transaction-scoped lock when that leads to a transaction
    pooler (store/migrate.py)."""
    direct = settings.database_direct_url
    apply_migrations(
        direct or settings.database_url or "",
        transaction_pooler=direct is None and settings.transaction_pooler,
    )


@contextlib.contextmanager
def embedded_runtime(
    settings: Settings, *, migrate: bool = True, start_emulator: bool = True
) -> Iterator[Runtime]:
    """Start what the settings leave unset; stop what was started here on exit."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pg: EmbeddedPostgres | None = None
    emulator: EmbeddedEmulator | None = None
    try:
        if settings.database_url is None:
            pg = EmbeddedPostgres(settings.data_dir / "postgres")
            settings = settings.with_overrides(database_url=pg.start())
            # Most commands only attach to the server a running serve launched.
            log.info(
                "embedded_postgres.started" if pg.launched else "embedded_postgres.attached",
                dsn=settings.database_url,
            )
        else:
            check_pooler(settings)
        if migrate:
            migrate_database(settings)
        if start_emulator and settings.payment_mode == "embedded-emulator":
            emulator = start_embedded_emulator(settings)
            settings = settings.with_overrides(
                stripe_api_base=emulator.url,
                stripe_api_key=EMULATOR_API_KEY,
                stripe_webhook_secret=emulator.webhook_secret,
            )
        settings = settings.with_overrides(admin_token=_admin_token(settings, pg is not None))
        yield Runtime(settings, pg, emulator.url if emulator else None)
    finally:
        if emulator is not None:
            emulator.stop()
        if pg is not None and pg.launched:
            pg.stop()


def start_embedded_emulator(settings: Settings) -> EmbeddedEmulator:
    """The emulator of the embedded stack: on its kept port, resuming its kept state; or,
    when another serve of the same data folder runs it, that one.

    It delivers its signed events to the service that runs it, as Stripe would. Stopping
    and starting `serve` leaves its pay links, sessions and undelivered events as they
    were, as a Stripe account would.
    """
    lock_path = settings.data_dir / EMULATOR_LOCK_FILE
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while True:
        fd = _try_lock(lock_path)
        if fd is not None:
            try:
                return _run_emulator(settings, fd)
            except BaseException:
                os.close(fd)
                raise
        joined = _join_emulator(settings)
        if joined is not None:
            return joined
        if time.monotonic() > deadline:
            raise StartupError(
                f"another `h2s-checkout serve` of {settings.data_dir} runs its Stripe emulator "
                f"(it holds {lock_path}), but the emulator does not answer at the address in "
                f"{settings.data_dir / EMULATOR_URL_FILE}. Stop that serve and start again; "
                "do not delete the emulator's files while it runs."
            )
        time.sleep(0.2)  # the other serve is still starting it


def _run_emulator(settings: Settings, lock_fd: int) -> EmbeddedEmulator:
    from stripe_checkout_emulator.access import new_admin_token
    from stripe_checkout_emulator.server import EmulatorServer
    from stripe_checkout_emulator.statefile import StateFileError

    secret = _webhook_secret(settings)
    admin_token = _kept_secret(settings.data_dir / EMULATOR_ADMIN_TOKEN_FILE, new_admin_token)
    port_file = settings.data_dir / EMULATOR_PORT_FILE
    port = _kept_port(port_file)
    state_path = settings.data_dir / EMULATOR_STATE_FILE
    try:
        server = EmulatorServer(
            port=port,
            webhook_url=f"http://127.0.0.1:{settings.port}/api/stripe/webhook",
            webhook_secret=secret,
            state_path=state_path,
            admin_token=admin_token,
        )
    except StateFileError as exc:
        raise StartupError(str(exc)) from exc
    try:
        url = server.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # Not another serve of this folder: that one would hold the lock this one holds.
        raise StartupError(
            f"the Stripe emulator's port {port} (kept in {port_file}) is taken by a process "
            f"that is not a `serve` of {settings.data_dir}. Stop that process, or delete "
            f"{port_file} to take a new port; the pay links handed out before then stop "
            "working."
        ) from exc
    # Commands run beside `serve` (reconcile, doctor) and other serves find it here.
    (settings.data_dir / EMULATOR_URL_FILE).write_text(url + "\n")
    log.info("stripe_emulator.started", url=url, state=str(state_path))
    return EmbeddedEmulator(url, admin_token, secret, settings.data_dir, server, lock_fd)


def _join_emulator(settings: Settings) -> EmbeddedEmulator | None:
    """The emulator another serve of this folder runs, once it answers; None until then."""
    url = _read(settings.data_dir / EMULATOR_URL_FILE)
    admin_token = _read(settings.data_dir / EMULATOR_ADMIN_TOKEN_FILE)
    if url is None or admin_token is None or not _answers(url):
        return None
    secret = settings.stripe_webhook_secret or _read(settings.data_dir / WEBHOOK_SECRET_FILE)
    if secret is None:
        # The first serve was given STRIPE_WEBHOOK_SECRET and wrote none to the folder.
        raise StartupError(
            f"another `h2s-checkout serve` of {settings.data_dir} runs its Stripe emulator at "
            f"{url}; to join it, give this one the same STRIPE_WEBHOOK_SECRET as that one"
        )
    log.info("stripe_emulator.joined", url=url, reason="another serve of this folder runs it")
    return EmbeddedEmulator(url, admin_token, secret, settings.data_dir)


def _webhook_secret(settings: Settings) -> str:
    if settings.stripe_webhook_secret:
        return settings.stripe_webhook_secret
    return _kept_secret(
        settings.data_dir / WEBHOOK_SECRET_FILE, lambda: "whsec_" + secrets.token_hex(24)
    )


def _kept_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret in ``path``; the first time, ``make()``'s, written there with mode 0600."""
    kept = _read(path)
    if kept is not None:
        return kept
    value = make()
    # Created 0600 from the start: never readable by others, even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _try_lock(path: Path) -> int | None:
    """An fd holding ``path``'s exclusive lock, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _lock_held_elsewhere(path: Path) -> bool:
    if not path.exists():
        return False
    fd = _try_lock(path)
    if fd is None:
        return True
    os.close(fd)
    return False


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_emulator/health", timeout=2) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _kept_port(path: Path) -> int:
    """The port in `path`; the first time, a free one, written there."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        path.write_text(f"{port}\n")
        return port
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise StartupError(f"{path} should hold the Stripe emulator's port number, not {text!r}")
    return int(text)


def export_environment(settings: Settings) -> None:
    """Hand resolved settings to server worker processes through their environment."""
    pairs = {
        "DATABASE_URL": settings.database_url,
        "STRIPE_API_BASE": settings.stripe_api_base,
        "STRIPE_API_KEY": settings.stripe_api_key,
        "H2S_ADMIN_TOKEN": settings.admin_token,
        "STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret,
        "PUBLIC_BASE_URL": settings.public_base_url,
        "PORT": str(settings.port),
        # Workers see DATABASE_URL set; the embedded stack's default must follow them.
        "H2S_EVENTS_ALLOW_PRIVATE": "true" if settings.events_allow_private else "false",
    }
    for key, value in pairs.items():
        if value:
            os.environ[key] = value
