"""Fault-injection rules (latency, error status, timeout, dropped connection) and their matching."""

import itertools
import random
import threading
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

KINDS = ("latency", "status", "timeout", "drop")
# A timeout hangs this long unless told otherwise: longer than any sane
# client timeout, short enough that a forgotten rule does not wedge a run.
DEFAULT_TIMEOUT_SECONDS = 30.0
_ids = itertools.count(1)


@dataclass
class FaultRule:
    """One rule: which requests it hits (`match`), what it does (`kind`), how often.

    - `latency`: wait `seconds`, then answer normally.
    - `status`: wait `seconds`, then answer `status` with a Stripe error body
      (`error` overrides its fields; 429 carries `Retry-After: retry_after`).
    - `timeout`: hang `seconds` (default 30), then close without answering.
    - `drop`: wait `seconds`, then close the connection without answering.

    With `processed=True`, `timeout` and `drop` first execute the request (a
    session is created and its result stored under the idempotency key), so
    only the answer is lost: the "did Stripe get it?" case. Otherwise the
    request never reaches the API. `times` limits how many requests the rule
    applies to (None: until removed); `probability` makes it apply randomly,
    from the fault set's seeded generator.
    """

    kind: str
    match: str = "*"
    seconds: float | None = None
    status: int = 500
    error: dict[str, Any] | None = None
    retry_after: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None
    probability: float = 1.0
    processed: bool = False
    id: str = field(default_factory=lambda: f"fault_{next(_ids)}")
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {KINDS}")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.kind == "status" and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.error and set(self.error) - {"type", "code", "message", "param"}:
            raise ValueError("error may only set type, code, message and param")
        self._method, self._path = _split_pattern(self.match)

    @property
    def delay(self) -> float:
        if self.seconds is not None:
            return float(self.seconds)
        return DEFAULT_TIMEOUT_SECONDS if self.kind == "timeout" else 0.0

    def matches(self, method: str, path: str) -> bool:
        methods = self._method.upper().split("|")
        if "*" not in methods and method.upper() not in methods:
            return False
        return _match_segments(self._path.strip("/").split("/"), path.strip("/").split("/"))

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FaultRule":
        allowed = set(cls.__dataclass_fields__) - {"id", "hits"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "kind" not in data:
            raise ValueError("fault needs a 'kind'")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "match": self.match,
            "seconds": self.seconds,
            "status": self.status,
            "error": self.error,
            "retry_after": self.retry_after,
            "headers": dict(self.headers),
            "times": self.times,
            "probability": self.probability,
            "processed": self.processed,
            "hits": self.hits,
        }


class FaultSet:
    """Ordered, thread-safe set of rules; the first rule that applies wins."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)

    def add(self, kind: str | FaultRule, match: str = "*", **options: Any) -> FaultRule:
        """Add a rule, e.g. `add("status", "POST /v1/checkout/sessions", status=500, times=1)`."""
        rule = kind if isinstance(kind, FaultRule) else FaultRule(kind=kind, match=match, **options)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def seed(self, seed: int | None) -> None:
        with self._lock:
            self._rng.seed(seed)

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def pick(self, method: str, path: str) -> FaultRule | None:
        """Return the rule that applies to this request, counting it as used."""
        with self._lock:
            for rule in self._rules:
                if rule.exhausted or not rule.matches(method, path):
                    continue
                # Drawn only for probabilistic rules so that adding a certain
                # rule does not shift the seeded sequence of the others.
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                rule.hits += 1
                return rule
        return None


def _split_pattern(pattern: str) -> tuple[str, str]:
    pattern = pattern.strip()
    if pattern in ("", "*"):
        return "*", "**"
    if " " in pattern:
        method, path = pattern.split(None, 1)
        return method, path.strip()
    return "*", pattern


def _match_segments(pattern: list[str], path: list[str]) -> bool:
    # "*" (or any glob) matches within one segment; "**" spans any number.
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match_segments(rest, path[i:]) for i in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], head) and _match_segments(rest, path[1:])
