"""In-memory emulator state: sessions, idempotency records, request log, faults and clock."""

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from . import ids
from .errors import StripeError, resource_missing
from .faults import FaultRule, FaultSet
from .objects import SessionSpec, build_line_items, build_session, mark_complete, mark_expired

LATENCY_ENV = "H2S_EMULATOR_LATENCY_MS"
MAX_IDEMPOTENCY_KEY = 255
# Stripe prunes keys after 24 h; a long benchmark would otherwise grow the
# store without bound, so the oldest keys go first beyond this many.
MAX_IDEMPOTENCY_ENTRIES = 100_000
# The request log keeps the latest entries only, for the same reason.
MAX_RECORDED_REQUESTS = 100_000


@dataclass
class RecordedRequest:
    """One request received on the Stripe API (admin calls are not recorded)."""

    request_id: str
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    api_key: str | None
    stripe_version: str | None
    received_at: float
    status: int | None = None  # None: no answer (dropped, hung or still running)
    fault: str | None = None  # kind of the fault rule applied, if any
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StoredResponse:
    status: int
    body: bytes
    request_id: str


@dataclass
class _IdempotencyEntry:
    method: str
    path: str
    params: dict[str, Any]
    response: StoredResponse | None = None  # None while the first request runs


def _clone(value: Any) -> Any:
    """Deep copy of JSON-shaped data; several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


class EmulatorState:
    """Everything the emulator remembers; safe to use from tests in other threads."""

    def __init__(
        self,
        latency_ms: float | None = None,
        seed: int | None = None,
        public_base_url: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if latency_ms is None:
            latency_ms = float(os.environ.get(LATENCY_ENV) or 0)
        self.latency_ms = float(latency_ms)
        self.public_base_url = public_base_url
        self.faults = FaultSet(seed)
        self._clock = clock
        self._clock_offset = 0.0
        self._lock = threading.RLock()
        self._sessions: dict[str, dict[str, Any]] = {}
        self._line_items: dict[str, list[dict[str, Any]]] = {}
        self._idempotency: dict[tuple[str, str], _IdempotencyEntry] = {}
        self._requests: deque[RecordedRequest] = deque(maxlen=MAX_RECORDED_REQUESTS)

    # -- clock -------------------------------------------------------------

    def now(self) -> int:
        return int(self._clock() + self._clock_offset)

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward, e.g. past a session's expires_at."""
        with self._lock:
            self._clock_offset += seconds

    # -- sessions ----------------------------------------------------------

    def create_session(self, spec: SessionSpec) -> dict[str, Any]:
        session_id = ids.session_id()
        now = self.now()
        url = f"{self.public_base_url.rstrip('/')}/c/pay/{session_id}"
        session = build_session(spec, session_id, now, url)
        with self._lock:
            self._sessions[session_id] = session
            self._line_items[session_id] = build_line_items(spec, now)
            return _clone(session)

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        with self._lock:
            session = self._live(session_id)
            return _clone(session) if session else None

    def line_items(self, session_id: str) -> list[dict[str, Any]] | None:
        with self._lock:
            items = self._line_items.get(session_id)
            return _clone(items) if items is not None else None

    @property
    def sessions(self) -> list[dict[str, Any]]:
        """All sessions, oldest first (copies)."""
        with self._lock:
            return [_clone(self._live(sid)) for sid in list(self._sessions)]

    def scan_sessions(self, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Copies of the sessions `keep` accepts, newest first (Stripe's list order)."""
        with self._lock:
            found = []
            for sid in reversed(self._sessions):
                session = self._live(sid)
                if session is not None and keep(session):
                    found.append(_clone(session))
            return found

    def expire_session(self, session_id: str) -> dict[str, Any]:
        """Expire an open session; raises the StripeError Stripe answers otherwise."""
        with self._lock:
            session = self._require(session_id)
            if session["status"] != "open":
                raise StripeError(
                    400,
                    f'Only Checkout Sessions with a status in ["open"] can be expired. '
                    f'This Checkout Session has a status of "{session["status"]}".',
                    # An endpoint-level refusal: Stripe stores it for replay.
                    stored=True,
                )
            mark_expired(session)
            return _clone(session)

    def complete_session(self, session_id: str, email: str | None = None) -> dict[str, Any]:
        """Mark an open session paid, as if the customer paid on the hosted page."""
        with self._lock:
            session = self._require(session_id)
            if session["status"] != "open":
                raise StripeError(
                    400, f"This Checkout Session is {session['status']} and can no longer be paid."
                )
            mark_complete(session, email)
            return _clone(session)

    def _require(self, session_id: str) -> dict[str, Any]:
        session = self._live(session_id)
        if session is None:
            raise resource_missing("checkout.session", session_id, "session")
        return session

    def _live(self, session_id: str) -> dict[str, Any] | None:
        session = self._sessions.get(session_id)
        # Stripe expires sessions on its own at expires_at; doing it lazily on
        # read gives the same observable result without a timer.
        if (
            session is not None
            and session["status"] == "open"
            and self.now() >= session["expires_at"]
        ):
            mark_expired(session)
        return session

    # -- request log -------------------------------------------------------

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def find_requests(self, match: str = "*") -> list[RecordedRequest]:
        """Recorded requests matching a fault-style pattern, e.g. "POST /v1/checkout/sessions"."""
        probe = FaultRule(kind="latency", match=match)
        return [r for r in self.requests if probe.matches(r.method, r.path)]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- idempotency -------------------------------------------------------

    def begin_idempotent(
        self, api_key: str, key: str, method: str, path: str, params: dict[str, Any]
    ) -> StoredResponse | None:
        """Claim `key` for this request, or return the stored response to replay.

        Raises Stripe's idempotency errors: 409 while the first request still
        runs, 400 when the key was used for another endpoint or other params.
        """
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise StripeError(
                400,
                f"Invalid idempotency key: must be at most {MAX_IDEMPOTENCY_KEY} characters long.",
                type="idempotency_error",
            )
        with self._lock:
            entry = self._idempotency.get((api_key, key))
            if entry is None:
                if len(self._idempotency) >= MAX_IDEMPOTENCY_ENTRIES:
                    del self._idempotency[next(iter(self._idempotency))]
                self._idempotency[(api_key, key)] = _IdempotencyEntry(method, path, _clone(params))
                return None
            if entry.response is None:
                raise StripeError(
                    409,
                    "There is currently another in-progress request using this Idempotent Key "
                    "(that probably means you submitted twice, and the other request is still "
                    f"going through): {key}. Please try again later.",
                    type="idempotency_error",
                    code="idempotency_key_in_use",
                )
            if (entry.method, entry.path) != (method, path):
                raise StripeError(
                    400,
                    "Keys for idempotent requests can only be used for the same endpoint they "
                    f"were first used for ('{entry.method} {entry.path}' vs '{method} {path}'). "
                    f"Try using a key other than '{key}' if you meant to execute a different "
                    "request.",
                    type="idempotency_error",
                )
            if entry.params != params:
                raise StripeError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request.",
                    type="idempotency_error",
                )
            return entry.response

    def finish_idempotent(self, api_key: str, key: str, response: StoredResponse | None) -> None:
        """Store the result for replay, or (None) release the key for a retry."""
        with self._lock:
            if response is None:
                self._idempotency.pop((api_key, key), None)
            elif (api_key, key) in self._idempotency:
                self._idempotency[(api_key, key)].response = response

    # -- reset -------------------------------------------------------------

    def reset(self) -> None:
        """Forget sessions, idempotency keys, requests and faults; reset the clock."""
        with self._lock:
            self._sessions.clear()
            self._line_items.clear()
            self._idempotency.clear()
            self._requests.clear()
            self._clock_offset = 0.0
        self.faults.clear()
