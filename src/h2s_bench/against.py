"""`--against REV`: an older revision of the service, installed to be served beside this one.

REV is resolved to a full sha and checked out with ``git worktree add --detach`` under the
bench's work directory (removed after the run unless the work directory is kept). Its
virtual environment is built once per sha under ``$H2S_BENCH_CACHE`` (default
``~/.cache/h2s-bench/<sha>/venv``) with a plain ``pip install`` of that worktree, so a
rerun reuses it and the worktree can go. The installed package has no ``db/migrations``
above it: every process of that revision gets ``H2S_MIGRATIONS_DIR`` pointing at the
worktree's own migrations, applied by its own ``h2s-checkout migrate`` (and its dbmate).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CACHE_ENV = "H2S_BENCH_CACHE"
# The packages whose versions the report shows for both sides: a difference there is part
# of what the comparison measures.
REPORTED_PACKAGES = (
    "granian",
    "litestar",
    "asyncpg",
    "python-statemachine",
    "stripe",
    "msgspec",
    "uvloop",
)
_INSTALLED_MARKER = "installed"


class AgainstError(RuntimeError):
    """The revision cannot be found, checked out or installed."""


def cache_root() -> Path:
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "h2s-bench"


def _git(repo: Path, *args: str, timeout: float = 120) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise AgainstError(f"git {' '.join(args)}: {exc.stderr.strip()}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgainstError(f"git {' '.join(args)}: {exc}") from exc
    return done.stdout.strip()


def repo_root() -> Path:
    """The git checkout this harness runs from."""
    return Path(_git(Path(__file__).resolve().parent, "rev-parse", "--show-toplevel"))


def resolve(rev: str, repo: Path) -> str:
    """REV (a sha, a tag, a branch, HEAD~3) as a full commit sha."""
    if rev.startswith("-"):
        raise AgainstError(f"not a revision: {rev!r}")
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")


def add_worktree(repo: Path, sha: str, dest: Path) -> None:
    _git(repo, "worktree", "add", "--detach", "--force", str(dest), sha)


def remove_worktree(repo: Path, dest: Path) -> None:
    with contextlib.suppress(AgainstError):
        _git(repo, "worktree", "remove", "--force", str(dest))
    shutil.rmtree(dest, ignore_errors=True)
    with contextlib.suppress(AgainstError):
        _git(repo, "worktree", "prune")


def package_versions(python: Path | str) -> dict[str, str]:
    """Versions of REPORTED_PACKAGES as ``python`` sees them (missing ones left out)."""
    script = (
        "import importlib.metadata as m, json, sys\n"
        "found = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(found))\n"
    )
    try:
        out = subprocess.run(
            [str(python), "-c", script, *REPORTED_PACKAGES],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
            check=True,
        ).stdout
        return dict(json.loads(out))
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def cached_venv(sha: str, source: Path, log: Path, cache: Path | None = None) -> tuple[Path, bool]:
    """The interpreter of REV's venv, built from ``source`` unless the cache has it;
    (python, reused). A venv without its marker (an install cut short) is rebuilt."""
    root = (cache or cache_root()) / sha
    python = root / "venv" / "bin" / "python"
    if (root / _INSTALLED_MARKER).exists() and python.exists():
        return python, True
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    with log.open("ab") as out:
        for cmd in (
            [sys.executable, "-m", "venv", str(root / "venv")],
            [str(python), "-m", "pip", "install", "--quiet", "--no-input", str(source)],
        ):
            # clean_env: a PYTHONPATH naming this tree's src/ (`just bench` runs from it)
            # would make pip take this code for REV's, already installed.
            done = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=clean_env(), check=False
            )
            if done.returncode != 0:
                raise AgainstError(
                    f"{' '.join(cmd[:4])}… failed (exit {done.returncode}); see {log}"
                )
    (root / _INSTALLED_MARKER).write_text(sha + "\n")
    return python, False


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without what would point another install at this one's
    code or configuration."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("H2S_", "STRIPE_", "PYTHON", "VIRTUAL_ENV", "DATABASE_URL"))
    }
    return env | (extra or {})


@dataclass
class Installed:
    """REV, checked out and installed: what the harness needs to run its processes."""

    sha: str
    worktree: Path
    python: Path
    reused_venv: bool
    install_s: float
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.sha[:7]

    @property
    def migrations(self) -> Path:
        return self.worktree / "db" / "migrations"

    @property
    def env(self) -> dict[str, str]:
        return {"H2S_MIGRATIONS_DIR": str(self.migrations)}

    def migrate(self, dsn: str, log: Path) -> None:
        """REV's own `h2s-checkout migrate` (its migrations, its dbmate) on ``dsn``."""
        with log.open("ab") as out:
            done = subprocess.run(
                [str(self.python), "-m", "h2s_checkout", "migrate"],
                env=clean_env({**self.env, "DATABASE_URL": dsn}),
                cwd=self.worktree,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            )
        if done.returncode != 0:
            raise AgainstError(f"{self.short}: h2s-checkout migrate failed; see {log}")


@contextlib.contextmanager
def installed(
    rev: str, work: Path, *, python: Path | None = None, keep: bool = False
) -> Iterator[Installed]:
    """REV checked out under ``work`` and installed (or run with the given ``python``);
    the worktree is removed on the way out unless ``keep``."""
    repo = repo_root()
    sha = resolve(rev, repo)
    dest = work / f"against-{sha[:12]}"
    if dest.exists():
        remove_worktree(repo, dest)
    add_worktree(repo, sha, dest)
    try:
        started = time.monotonic()
        if python is None:
            python, reused = cached_venv(sha, dest, work / f"against-{sha[:12]}-install.log")
        else:
            reused = True
        yield Installed(
            sha,
            dest,
            python,
            reused,
            time.monotonic() - started,
            package_versions(python),
        )
    finally:
        if not keep:
            remove_worktree(repo, dest)
