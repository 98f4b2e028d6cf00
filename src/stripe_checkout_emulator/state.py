"""Emulator state: sessions, idempotency records, request log, faults, clock, events.

In memory; with a `state_path`, also in a SQLite file (statefile.py) that is
written through on every change and read back at start, so a restarted
emulator knows its sessions, answers, events and undelivered webhooks.
"""

import asyncio
import heapq
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import ids
from .errors import StripeError, resource_missing
from .faults import FaultRule, FaultSet
from .ledger import Ledger, RefundRule
from .objects import (
    RefundSpec,
    SessionSpec,
    build_line_items,
    build_session,
    mark_async_outcome,
    mark_complete,
    mark_expired,
)
from .statefile import IdempotencyRow, StateFile
from .webhooks import (
    ASYNC_FAILED,
    ASYNC_SUCCEEDED,
    COMPLETED,
    CURRENT_REQUEST,
    EXPIRED,
    Delivery,
    RetryPolicy,
    WebhookDispatcher,
    build_event,
)

log = logging.getLogger(__name__)

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
    """Everything the emulator remembers; safe to use from tests in other threads.

    Session transitions publish Stripe events to `webhooks` (a WebhookDispatcher),
    which delivers them to `webhook_url`, signed with `webhook_secret`, once
    `start()` ran on the serving loop. The same loop runs a sweeper that expires
    sessions at `expires_at` and settles delayed payments when due.

    `state_path` (a SQLite file, created if missing) makes the state outlive
    the process: what it holds is loaded here, and every change is written
    to it before the lock that made it is released.
    """

    def __init__(
        self,
        latency_ms: float | None = None,
        seed: int | None = None,
        public_base_url: str = "",
        clock: Callable[[], float] = time.time,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_retry: RetryPolicy | None = None,
        sweep_interval_s: float = 1.0,
        state_path: str | Path | None = None,
    ) -> None:
        if latency_ms is None:
            latency_ms = float(os.environ.get(LATENCY_ENV) or 0)
        self.latency_ms = float(latency_ms)
        self.public_base_url = public_base_url
        self.faults = FaultSet(seed)
        self._clock = clock
        self._clock_offset = 0.0
        self.store = StateFile(state_path) if state_path is not None else None
        # With a store, the lock also commits the writes made while it is held;
        # without one it is a bare RLock: no cost when persistence is off.
        self._lock: Any = threading.RLock()
        if self.store is not None:
            self._lock = self.store.guard(self._lock)
        self._sessions: dict[str, dict[str, Any]] = {}
        self._line_items: dict[str, list[dict[str, Any]]] = {}
        self._idempotency: dict[tuple[str, str], _IdempotencyEntry] = {}
        self._requests: deque[RecordedRequest] = deque(maxlen=MAX_RECORDED_REQUESTS)
        self.webhooks = WebhookDispatcher(webhook_url, webhook_secret, webhook_retry, self.store)
        self.sweep_interval_s = sweep_interval_s
        self._expiry: list[tuple[int, str]] = []  # heap of (expires_at, session id)
        # Delayed payments awaiting their outcome: session id -> (due on the
        # emulator's clock, or None to wait for a command; succeeded?).
        self._async_pending: dict[str, tuple[float | None, bool]] = {}
        # What a session's payment_intent_data asked of its PaymentIntent: manual capture
        # (held when completed) and the metadata Stripe copies onto it.
        self._intent_data: dict[str, dict[str, Any]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        # Payment intents, charges and refunds behind paid sessions.
        self.ledger = Ledger(self.store, self._emit)
        if self.store is not None:
            self._load(self.store)

    def _load(self, store: StateFile) -> None:
        """Take up where the last process that used `store` stopped."""
        self._clock_offset = float(store.meta("clock_offset", 0.0))
        self._sessions = store.object_map("checkout.session")
        self._line_items = store.object_map("line_items")
        self._intent_data = store.object_map("payment_intent_data")
        for session in self._sessions.values():
            if session["status"] == "open":
                heapq.heappush(self._expiry, (session["expires_at"], session["id"]))
        for row in store.idempotency():
            response = StoredResponse(row.status, row.body, row.request_id)
            entry = _IdempotencyEntry(row.method, row.path, row.params, response)
            self._idempotency[(row.api_key, row.key)] = entry
        self._async_pending = store.delayed_payments()

    # -- background work (on the serving loop) -------------------------------

    async def start(self) -> None:
        """Start webhook delivery and the expiry sweeper on the running loop."""
        await self.webhooks.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="emulator-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self.webhooks.close()

    def close(self) -> None:
        """Close the state file, if any; call once the serving loop stopped."""
        if self.store is not None:
            self.store.close()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                self.sweep()
            except Exception:
                log.exception("emulator sweep failed")

    def sweep(self) -> None:
        """Expire sessions whose expires_at passed and settle due delayed payments."""
        with self._lock:
            now = self.now()
            while self._expiry and self._expiry[0][0] <= now:
                _, session_id = heapq.heappop(self._expiry)
                self._live(session_id)  # expires it, with its event, if still open
            exact = self._now_exact()
            due = [
                (sid, ok)
                for sid, (at, ok) in self._async_pending.items()
                if at is not None and at <= exact
            ]
            for session_id, succeeded in due:
                self._settle_async_locked(session_id, succeeded)
            for refund_id, pending in self.ledger.due_refunds(exact):
                self.ledger.settle_refund(refund_id, pending.succeeds, pending.failure_reason)
            for payment_intent in self.ledger.lapsed_holds(now):
                self.ledger.lapse(payment_intent, now)

    # -- events --------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event emitted, oldest first (copies)."""
        return self.webhooks.events

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook delivery attempt."""
        return self.webhooks.deliveries

    def _emit(
        self,
        event_type: str,
        session: dict[str, Any],
        request: dict[str, str | None] | None = None,
    ) -> dict[str, Any]:
        event = build_event(
            event_type,
            session,
            created=self.now(),
            request=request,
            pending_webhooks=1 if self.webhooks.url else 0,
        )
        self.webhooks.publish(event)
        return _clone(event)  # the log keeps its own

    def send_event(
        self, session_id: str, event_type: str, email: str | None = None, force: bool = False
    ) -> dict[str, Any]:
        """Apply the change `event_type` stands for to the session, and emit it.

        completed: pays an open session; expired: expires an open session;
        async_payment_succeeded/failed: settles a complete, unpaid one. Where
        the session is in another state, raises a 400 unless `force`, which
        emits the event with the session as it is (any checkout.session.* type).
        """
        with self._lock:
            session = self._require(session_id)
            status, paid = session["status"], session["payment_status"]
            if event_type == COMPLETED and status == "open":
                return self._complete_locked(session, email)[1]
            if event_type == EXPIRED and status == "open":
                return self._expire_locked(session)
            if (
                event_type in (ASYNC_SUCCEEDED, ASYNC_FAILED)
                and status == "complete"
                and paid == "unpaid"
            ):
                return self._settle_async_locked(session_id, event_type == ASYNC_SUCCEEDED)[1]
            if not event_type.startswith("checkout.session."):
                raise ValueError(f"unsupported event type {event_type!r}")
            if not force:
                raise StripeError(
                    400,
                    f"Cannot send {event_type} for a session with status {status!r} and "
                    f"payment_status {paid!r}; pass force to send it anyway.",
                )
            return self._emit(event_type, _clone(session))

    # -- clock -------------------------------------------------------------

    def now(self) -> int:
        return int(self._clock() + self._clock_offset)

    def _now_exact(self) -> float:
        return self._clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward, e.g. past a session's expires_at.

        Sessions that expire and delayed payments that fall due meanwhile do so
        (with their events) before this returns.
        """
        with self._lock:
            self._clock_offset += seconds
            if self.store is not None:
                self.store.put_meta("clock_offset", self._clock_offset)
            self.sweep()

    # -- sessions ----------------------------------------------------------

    def create_session(self, spec: SessionSpec) -> dict[str, Any]:
        session_id = ids.session_id()
        now = self.now()
        url = f"{self.public_base_url.rstrip('/')}/c/pay/{session_id}"
        session = build_session(spec, session_id, now, url)
        with self._lock:
            self._sessions[session_id] = session
            self._line_items[session_id] = items = build_line_items(spec, now)
            heapq.heappush(self._expiry, (session["expires_at"], session_id))
            intent_data = None
            if spec.capture_method == "manual" or spec.payment_intent_metadata:
                intent_data = {
                    "id": session_id,
                    "capture_method": spec.capture_method,
                    "metadata": dict(spec.payment_intent_metadata),
                }
                self._intent_data[session_id] = intent_data
            if self.store is not None:
                self.store.put_object("checkout.session", session_id, session)
                self.store.put_object("line_items", session_id, items)
                if intent_data is not None:
                    self.store.put_object("payment_intent_data", session_id, intent_data)
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
            # Inside an API request the event names it, as Stripe's do.
            self._expire_locked(session, CURRENT_REQUEST.get())
            return _clone(session)

    def complete_session(
        self,
        session_id: str,
        email: str | None = None,
        *,
        delayed: bool = False,
        succeeds: bool = True,
        delay_s: float | None = None,
    ) -> dict[str, Any]:
        """Pay an open session, as the customer does on the hosted page; emits completed.

        `delayed` stands for a delayed payment method (e.g. a bank debit): the
        session completes with payment_status "unpaid", and its money arrives
        (`succeeds`) or not `delay_s` seconds later on the emulator's clock, or,
        with `delay_s=None`, when `settle_async_payment` or an admin call says so.
        """
        with self._lock:
            session = self._require(session_id)
            if session["status"] != "open":
                raise StripeError(
                    400, f"This Checkout Session is {session['status']} and can no longer be paid."
                )
            if delayed:
                due = None if delay_s is None else self._now_exact() + delay_s
                self._async_pending[session_id] = (due, succeeds)
                if self.store is not None:
                    self.store.put_delayed_payment(session_id, due, succeeds)
            return self._complete_locked(session, email, delayed)[0]

    def settle_async_payment(self, session_id: str, succeeded: bool) -> dict[str, Any]:
        """Settle a delayed payment now; emits async_payment_succeeded or _failed."""
        with self._lock:
            session = self._require(session_id)
            if session["status"] != "complete" or session["payment_status"] != "unpaid":
                raise StripeError(
                    400,
                    f"This Checkout Session ({session['status']}, {session['payment_status']}) "
                    "has no delayed payment to settle.",
                )
            return self._settle_async_locked(session_id, succeeded)[0]

    def _complete_locked(
        self, session: dict[str, Any], email: str | None, delayed: bool = False
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # A held payment is not paid yet: Stripe's session says "unpaid", as for a bank
        # debit; its PaymentIntent (requires_capture) tells the two apart.
        intent_data = self._intent_data.get(session["id"]) or {}
        manual = not delayed and intent_data.get("capture_method") == "manual"
        paid = not delayed and not manual
        mark_complete(session, email, payment_status="paid" if paid else "unpaid")
        self.ledger.record_payment(
            session,
            self.now(),
            delayed=delayed,
            manual=manual,
            metadata=intent_data.get("metadata") or {},
        )
        self._save_session(session)
        snapshot = _clone(session)
        return snapshot, self._emit(COMPLETED, snapshot)

    def _expire_locked(
        self, session: dict[str, Any], request: dict[str, str | None] | None = None
    ) -> dict[str, Any]:
        mark_expired(session)
        self._save_session(session)
        return self._emit(EXPIRED, _clone(session), request)

    def _settle_async_locked(
        self, session_id: str, succeeded: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        self._async_pending.pop(session_id, None)
        session = self._sessions[session_id]
        mark_async_outcome(session, succeeded)
        self.ledger.settle_payment(session["payment_intent"], succeeded)
        if self.store is not None:
            self.store.delete_delayed_payment(session_id)
        self._save_session(session)
        snapshot = _clone(session)
        return snapshot, self._emit(ASYNC_SUCCEEDED if succeeded else ASYNC_FAILED, snapshot)

    def _save_session(self, session: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.put_object("checkout.session", session["id"], session)

    def _require(self, session_id: str) -> dict[str, Any]:
        session = self._live(session_id)
        if session is None:
            raise resource_missing("checkout.session", session_id, "session")
        return session

    def _live(self, session_id: str) -> dict[str, Any] | None:
        session = self._sessions.get(session_id)
        # Stripe expires sessions on its own at expires_at. The sweeper does it
        # within a second; a read in between must not see it open either.
        if (
            session is not None
            and session["status"] == "open"
            and self.now() >= session["expires_at"]
        ):
            self._expire_locked(session)
        return session

    # -- payments and refunds ----------------------------------------------

    def get_payment_intent(self, payment_intent_id: str) -> dict[str, Any] | None:
        with self._lock:
            intent = self.ledger.payment_intents.get(payment_intent_id)
            return _clone(intent) if intent is not None else None

    def get_charge(self, charge_id: str) -> dict[str, Any] | None:
        with self._lock:
            charge = self.ledger.charges.get(charge_id)
            return _clone(self.ledger.charge_view(charge)) if charge is not None else None

    def create_refund(self, spec: RefundSpec) -> dict[str, Any]:
        """Refund a paid session's payment (see ledger.py); raises Stripe's refusals."""
        with self._lock:
            refund = self.ledger.create_refund(
                spec, self.now(), self._now_exact(), CURRENT_REQUEST.get()
            )
            return _clone(refund)

    def capture_payment_intent(self, payment_intent: str, amount: int | None) -> dict[str, Any]:
        """Capture all or part of a held payment (see ledger.py); raises Stripe's refusals."""
        with self._lock:
            intent = self.ledger.capture(payment_intent, amount, self.now(), CURRENT_REQUEST.get())
            return _clone(intent)

    def cancel_payment_intent(self, payment_intent: str, reason: str | None) -> dict[str, Any]:
        """Release a held payment; emits payment_intent.canceled."""
        with self._lock:
            intent = self.ledger.cancel(payment_intent, reason, self.now(), CURRENT_REQUEST.get())
            return _clone(intent)

    def lapse_hold(self, payment_intent: str) -> dict[str, Any]:
        """Let a held payment lapse now, as the card's issuer does after 7 days: Stripe
        cancels it (`cancellation_reason: automatic`) and sends payment_intent.canceled."""
        with self._lock:
            return _clone(self.ledger.lapse(payment_intent, self.now()))

    def get_refund(self, refund_id: str) -> dict[str, Any] | None:
        with self._lock:
            refund = self.ledger.refunds.get(refund_id)
            return _clone(refund) if refund is not None else None

    def list_refunds(
        self, payment_intent: str | None = None, charge: str | None = None
    ) -> list[dict[str, Any]]:
        """Refunds newest first, of one payment intent or charge if given (copies)."""
        with self._lock:
            return _clone(self.ledger.list_refunds(payment_intent, charge))

    def settle_refund(
        self, refund_id: str, succeeded: bool, failure_reason: str | None = None
    ) -> dict[str, Any]:
        """End a pending refund now: succeeded, or failed with `failure_reason`
        (default: the one its fault planned); emits refund.updated (and refund.failed)."""
        with self._lock:
            return _clone(self.ledger.settle_refund(refund_id, succeeded, failure_reason))

    def add_refund_rule(self, rule: RefundRule) -> RefundRule:
        """Make matching refunds pending first (see RefundRule)."""
        with self._lock:
            self.ledger.rules.append(rule)
            return rule

    @property
    def refund_rules(self) -> list[RefundRule]:
        with self._lock:
            return list(self.ledger.rules)

    def remove_refund_rule(self, rule_id: str) -> bool:
        with self._lock:
            kept = [r for r in self.ledger.rules if r.id != rule_id]
            found = len(kept) != len(self.ledger.rules)
            self.ledger.rules[:] = kept
            return found

    def clear_refund_rules(self) -> None:
        with self._lock:
            self.ledger.rules.clear()

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
                    oldest = next(iter(self._idempotency))
                    del self._idempotency[oldest]
                    if self.store is not None:
                        self.store.delete_idempotent(*oldest)
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
            elif (entry := self._idempotency.get((api_key, key))) is not None:
                entry.response = response
                # Only finished answers are kept: a request in flight when the
                # process died never answered, so its retry runs afresh.
                if self.store is not None:
                    self.store.put_idempotent(
                        IdempotencyRow(
                            api_key,
                            key,
                            entry.method,
                            entry.path,
                            entry.params,
                            response.status,
                            response.body,
                            response.request_id,
                        )
                    )

    # -- reset -------------------------------------------------------------

    def reset(self) -> None:
        """Forget sessions, payments, refunds, idempotency keys, requests, faults, events
        and undelivered webhooks; reset the clock. The webhook endpoint and secret stay."""
        with self._lock:
            self._sessions.clear()
            self._line_items.clear()
            self._idempotency.clear()
            self._requests.clear()
            self._expiry.clear()
            self._async_pending.clear()
            self._intent_data.clear()
            self._clock_offset = 0.0
            self.ledger.reset()
            self.webhooks.reset()
            if self.store is not None:
                self.store.clear()
        self.faults.clear()
