"""py-spy on a server worker under load: where its CPU goes (a dev tool, optional)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_SITE = re.compile(r".*?/(?:site|dist)-packages/")

# Where a sample's time goes: the first frame from the leaf up whose package is named here.
_CATEGORIES = {
    "asyncpg": "asyncpg (the PostgreSQL driver)",
    "stripe": "stripe SDK (building the request, parsing the answer)",
    "aiohttp": "aiohttp (HTTP client)",
    "statemachine": "python-statemachine",
    "structlog": "logging (structlog, logging)",
    "logging": "logging (structlog, logging)",
    "litestar": "HTTP framework (litestar, granian, msgspec)",
    "granian": "HTTP framework (litestar, granian, msgspec)",
    "msgspec": "HTTP framework (litestar, granian, msgspec)",
}
STATEMACHINE = _CATEGORIES["statemachine"]
_SERVICE = "service code (h2s_checkout)"
_REST = "asyncio and the rest of the stdlib"
_NATIVE = "native code, no Python frame (uvloop, asyncpg's protocol parsing, granian)"


def py_spy() -> str | None:
    """py-spy next to this interpreter (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(pid: int, duration_s: float, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """Sample ``pid`` for ``duration_s`` into ``out`` (collapsed stacks), without pausing it."""
    exe = py_spy()
    if exe is None:
        raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(round(duration_s), 1)),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


# The command that started the worker: at the bottom of every stack, never where time goes.
_ENTRY = ("h2s_checkout.__main__", "h2s_checkout.cli")


def _short_file(path: str) -> str:
    """py-spy prints paths relative to sys.path already; absolute ones are cut too."""
    path = _SITE.sub("", path)
    return path.split("/src/", 1)[-1]


def _package(path: str) -> str:
    """``asyncpg``, ``litestar``, ``h2s_checkout.flows``, ``asyncio``, ..."""
    parts = _short_file(path).split("/")
    if parts[0] == "h2s_checkout":
        return "h2s_checkout." + parts[1].removesuffix(".py") if len(parts) > 1 else parts[0]
    return parts[0].removesuffix(".py")


def _frame(text: str) -> tuple[str, str]:
    """(``func (file)`` without the line, package)."""
    m = _FRAME.match(text.strip())
    if not m:
        return text.strip(), "?"
    file = m.group("file")
    return f"{m.group('func')} ({_short_file(file)})", _package(file)


def _category(packages: list[str]) -> str:
    """From the leaf up, the first package that says where the time goes."""
    has_stripe = "stripe" in packages
    for pkg in reversed(packages):
        if pkg == "aiohttp" and has_stripe:
            return _CATEGORIES["stripe"]
        if pkg in _CATEGORIES:
            return _CATEGORIES[pkg]
        if pkg.startswith("h2s_checkout") and pkg not in _ENTRY:
            return _SERVICE
    return _REST


@dataclass
class Profile:
    samples: int = 0
    categories: list[tuple[str, float]] = field(default_factory=list)
    self_top: list[tuple[str, float]] = field(default_factory=list)
    service_inclusive: list[tuple[str, float]] = field(default_factory=list)
    packages_self: list[tuple[str, float]] = field(default_factory=list)
    packages_inclusive: dict[str, float] = field(default_factory=dict)

    def share(self, category: str) -> float:
        """The % of samples charged to ``category`` (0 when none fell there)."""
        return dict(self.categories).get(category, 0.0)


def summarize(raw: Path, top: int = 15) -> Profile:
    """Time per category, self time per function (the leaf frame), inclusive time of the
    service's own functions, and self and inclusive time per package."""
    cat_t: Counter[str] = Counter()
    self_t: Counter[str] = Counter()
    incl_t: Counter[str] = Counter()
    pkg_self: Counter[str] = Counter()
    pkg_incl: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        samples += count
        if not frames:
            cat_t[_NATIVE] += count
            continue
        leaf, leaf_pkg = frames[-1]
        self_t[leaf] += count
        pkg_self[leaf_pkg] += count
        cat_t[_category([p for _f, p in frames])] += count
        for name in {f for f, p in frames if p.startswith("h2s_checkout.") and p not in _ENTRY}:
            incl_t[name] += count
        for pkg in {p for _f, p in frames}:
            pkg_incl[pkg] += count

    def share(counter: Counter[str], n: int | None) -> list[tuple[str, float]]:
        return [(k, 100 * v / samples) for k, v in counter.most_common(n)] if samples else []

    return Profile(
        samples=samples,
        categories=share(cat_t, None),
        self_top=share(self_t, top),
        service_inclusive=share(incl_t, top),
        packages_self=share(pkg_self, top),
        packages_inclusive=dict(share(pkg_incl, None)),
    )
