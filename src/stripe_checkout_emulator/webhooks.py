"""Stripe webhook events of the emulator: build, sign, log and deliver them with retries.

Stripe POSTs each event as pretty-printed JSON to every endpoint, signed in the
`Stripe-Signature` header (`t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">`),
and retries a failing endpoint (non-2xx, redirect, timeout or connection
error) with exponential backoff for up to three days. Here the schedule is a
`RetryPolicy` so tests finish in seconds.

The dispatcher is thread-safe: events are published from the serving loop
(API and hosted-page requests) or from a test thread (EmulatorState calls);
delivery runs on the serving loop once `start()` ran there. With a StateFile,
the event log and every delivery not yet done (sent, or given up on) are
kept there, and a new dispatcher on the same file resumes those deliveries.
"""

import asyncio
import contextlib
import fnmatch
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import aiohttp
import stripe

from .events import (
    ASYNC_FAILED,
    ASYNC_SUCCEEDED,
    COMPLETED,
    EXPIRED,
    SESSION_EVENT_TYPES,
    WEBHOOK_SECRET_ENV,
    WEBHOOK_URL_ENV,
)
from .ids import new_id
from .statefile import DeliveryRow, StateFile

log = logging.getLogger(__name__)

__all__ = [
    "ASYNC_FAILED",
    "ASYNC_SUCCEEDED",
    "COMPLETED",
    "CURRENT_REQUEST",
    "EXPIRED",
    "SESSION_EVENT_TYPES",
    "WEBHOOK_SECRET_ENV",
    "WEBHOOK_URL_ENV",
    "Delivery",
    "RetryPolicy",
    "WebhookDispatcher",
    "WebhookRule",
    "build_event",
    "event_body",
    "sign_payload",
]

# Memory bounds for long benchmarks: the oldest entries go first.
MAX_EVENTS = 10_000
MAX_DELIVERIES = 50_000

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"

# The API request being handled (set by EmulatorApp): an event caused by an API
# call names it in `request`, as Stripe's do.
CURRENT_REQUEST: ContextVar[dict[str, str | None] | None] = ContextVar(
    "emulator_current_request", default=None
)


def build_event(
    event_type: str,
    obj: dict[str, Any],
    *,
    created: int | None = None,
    request: dict[str, str | None] | None = None,
    pending_webhooks: int = 1,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A Stripe `event` object whose `data.object` is a snapshot of `obj`."""
    return {
        "id": event_id or new_id("evt_"),
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()) if created is None else created,
        "data": {"object": json.loads(json.dumps(obj))},
        "livemode": False,
        "pending_webhooks": pending_webhooks,
        "request": dict(request) if request else {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def event_body(event: dict[str, Any]) -> bytes:
    """The bytes POSTed for `event`: Stripe sends pretty-printed JSON."""
    return json.dumps(event, indent=2).encode()


def sign_payload(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header value for `payload` (the raw request body)."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8")
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


@dataclass
class RetryPolicy:
    """Attempt n (1-based) failing waits base_s * factor**(n-1), capped, before attempt n+1."""

    base_s: float = 0.5
    factor: float = 2.0
    max_attempts: int = 8
    max_delay_s: float = 3600.0
    timeout_s: float = 10.0

    def delay(self, failed_attempt: int) -> float:
        return min(self.base_s * self.factor ** (failed_attempt - 1), self.max_delay_s)

    def updated(self, changes: dict[str, Any]) -> "RetryPolicy":
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown webhook_retry fields: {sorted(unknown)}")
        policy = replace(self, **{k: type(getattr(self, k))(v) for k, v in changes.items()})
        if policy.max_attempts < 1 or policy.base_s < 0 or policy.timeout_s <= 0:
            raise ValueError("webhook_retry: max_attempts >= 1, base_s >= 0, timeout_s > 0")
        return policy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Delivery:
    """One attempt to POST an event to the endpoint."""

    event_id: str
    type: str
    attempt: int  # 1 for the first try of this delivery, then each retry
    reason: str  # "event", "duplicate" (a fault's extra copy) or "redeliver"
    url: str | None
    delay_s: float  # the backoff waited before this attempt (0 for a first try)
    sent_at: float  # wall clock
    duration_ms: float = 0.0
    status: int | None = None  # None: no HTTP answer (see error)
    error: str | None = None
    ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WebhookRule:
    """A delivery fault: `duplicate` sends matching events `copies` times; `delay`
    holds a matching event's first attempt back `seconds`, so later events overtake it."""

    kind: str
    type: str = "*"  # fnmatch pattern on the event type
    times: int | None = None  # how many events it applies to; None: all
    copies: int = 2
    seconds: float = 1.0
    id: str = field(default_factory=lambda: new_id("whf_", 12))
    applied: int = 0

    KINDS = ("duplicate", "delay")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WebhookRule":
        unknown = set(data) - {"kind", "type", "times", "copies", "seconds", "id"}
        if unknown:
            raise ValueError(f"unknown webhook fault fields: {sorted(unknown)}")
        rule = cls(**data)
        if rule.kind not in cls.KINDS:
            raise ValueError(f"webhook fault kind must be one of {list(cls.KINDS)}")
        if rule.copies < 1 or rule.seconds < 0 or (rule.times is not None and rule.times < 1):
            raise ValueError("webhook fault: copies >= 1, seconds >= 0, times >= 1")
        return rule

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def take(self, event_type: str) -> bool:
        if not fnmatch.fnmatchcase(event_type, self.type):
            return False
        if self.times is not None and self.applied >= self.times:
            return False
        self.applied += 1
        return True


@dataclass
class _Job:
    event_id: str
    type: str
    body: bytes
    reason: str
    generation: int
    delay_s: float = 0.0  # held back before its attempt (delay fault, resumed retry)
    attempt: int = 1  # the attempt the queue makes; above 1 for a resumed delivery
    id: str = field(default_factory=lambda: new_id("whd_", 16))


class WebhookDispatcher:
    """The event log and the endpoint's delivery queue, with retries and faults."""

    def __init__(
        self,
        url: str | None = None,
        secret: str | None = None,
        retry: RetryPolicy | None = None,
        store: StateFile | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.retry = retry or RetryPolicy()
        self._store = store
        self._lock = threading.Lock()
        self._events: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._deliveries: list[Delivery] = []
        self._rules: list[WebhookRule] = []
        self._holding = False
        self._held: list[_Job] = []
        self._pending = 0  # jobs queued, held, waiting or in flight
        self._generation = 0  # bumped by reset(): older jobs are dropped
        self._prestart: list[tuple[_Job, float]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        if store is not None:
            self._load(store)

    def _load(self, store: StateFile) -> None:
        """The logged events, and the deliveries the last process left undone, due as planned."""
        for event in store.events():
            self._events[event["id"]] = event
        now = time.time()
        for row in store.deliveries():
            job = _Job(row.event_id, row.type, row.body, row.reason, self._generation)
            job.id, job.attempt, job.delay_s = row.job_id, row.attempt, max(row.due_at - now, 0.0)
            self._pending += 1
            self._prestart.append((job, job.delay_s))

    # -- lifecycle (on the serving loop) ------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._http = aiohttp.ClientSession()
        # First attempts go out one at a time, in publishing order, so a
        # receiver sees events in order unless a fault or a retry says otherwise.
        self._worker = asyncio.create_task(self._work(), name="emulator-webhooks")
        with self._lock:
            waiting, self._prestart = self._prestart, []
        for job, delay in waiting:
            self._enqueue(job, delay)

    async def close(self) -> None:
        tasks = [t for t in (self._worker, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        self._loop = None

    # -- event log ------------------------------------------------------------

    def publish(self, event: dict[str, Any]) -> None:
        """Log `event` and, when an endpoint is configured, queue its delivery."""
        with self._lock:
            self._events[event["id"]] = event
            if self._store is not None:
                self._store.put_event(event)
            while len(self._events) > MAX_EVENTS:
                dropped, _ = self._events.popitem(last=False)
                if self._store is not None:
                    self._store.delete_event(dropped)
            if self.url is None:
                return
            copies, delay = 1, 0.0
            for rule in self._rules:
                if rule.kind == "duplicate" and rule.take(event["type"]):
                    copies = max(copies, rule.copies)
                elif rule.kind == "delay" and rule.take(event["type"]):
                    delay = max(delay, rule.seconds)
            body = event_body(event)
            for copy in range(copies):
                reason = "event" if copy == 0 else "duplicate"
                job = _Job(event["id"], event["type"], body, reason, self._generation, delay)
                self._submit_locked(job)

    def redeliver(self, event_id: str) -> dict[str, Any]:
        """Send a logged event again (as the Dashboard's Resend does); returns it."""
        with self._lock:
            event = self._events.get(event_id)
            if event is None:
                raise KeyError(event_id)
            if self.url is None:
                raise ValueError("no webhook_url configured")
            job = _Job(event_id, event["type"], event_body(event), "redeliver", self._generation)
            self._submit_locked(job)
            return json.loads(json.dumps(event))

    @property
    def events(self) -> list[dict[str, Any]]:
        """Logged events, oldest first (copies)."""
        with self._lock:
            return json.loads(json.dumps(list(self._events.values())))

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            event = self._events.get(event_id)
            return json.loads(json.dumps(event)) if event is not None else None

    @property
    def deliveries(self) -> list[Delivery]:
        """Every delivery attempt, in the order they finished."""
        with self._lock:
            return list(self._deliveries)

    @property
    def idle(self) -> bool:
        """No delivery queued, held, waiting for a retry or in flight."""
        with self._lock:
            return self._pending == 0

    # -- faults ---------------------------------------------------------------

    def add_rule(self, rule: WebhookRule) -> WebhookRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    @property
    def rules(self) -> list[WebhookRule]:
        with self._lock:
            return list(self._rules)

    def remove_rule(self, rule_id: str) -> bool:
        with self._lock:
            kept = [r for r in self._rules if r.id != rule_id]
            found = len(kept) != len(self._rules)
            self._rules = kept
            return found

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def hold(self) -> None:
        """Queue deliveries without sending them until release()."""
        with self._lock:
            self._holding = True

    def release(self, order: str | list[str] = "fifo") -> list[str]:
        """Send the held deliveries: "fifo", "reverse", or event ids first in that
        order (the rest after, oldest first). Returns the event ids in sending order."""
        with self._lock:
            held, self._held, self._holding = self._held, [], False
            if order == "reverse":
                held.reverse()
            elif isinstance(order, list):
                rank = {event_id: i for i, event_id in enumerate(order)}
                held.sort(key=lambda job: rank.get(job.event_id, len(rank)))
            elif order != "fifo":
                raise ValueError('order is "fifo", "reverse" or a list of event ids')
            for job in held:
                self._dispatch_locked(job)
            return [job.event_id for job in held]

    @property
    def holding(self) -> bool:
        with self._lock:
            return self._holding

    def reset(self) -> None:
        """Forget events, deliveries, faults and anything not yet delivered."""
        with self._lock:
            self._generation += 1
            self._events.clear()
            self._deliveries.clear()
            self._rules.clear()
            self._held.clear()
            self._prestart.clear()
            self._holding = False
            self._pending = 0
        self._call(self._drop_queued)

    # -- delivery -------------------------------------------------------------

    def _submit_locked(self, job: _Job) -> None:
        self._pending += 1
        if self._store is not None:
            # Inside an EmulatorState change this commits with it. Should the
            # delivery finish before that commit (a change made off the serving
            # loop), the row outlives it: a restart sends the event once more,
            # which at-least-once delivery allows.
            self._store.put_delivery(
                DeliveryRow(
                    job.id,
                    job.event_id,
                    job.type,
                    job.body,
                    job.reason,
                    job.attempt,
                    time.time() + job.delay_s,
                )
            )
        if self._holding:
            self._held.append(job)
        else:
            self._dispatch_locked(job)

    def _dispatch_locked(self, job: _Job) -> None:
        if self._loop is None:
            self._prestart.append((job, job.delay_s))
        else:
            self._call(self._enqueue, job, job.delay_s)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to do
            loop.call_soon_threadsafe(fn, *args)

    def _enqueue(self, job: _Job, delay: float) -> None:
        assert self._queue is not None
        if delay > 0:
            self._spawn(self._enqueue_later(job, delay))
        else:
            self._queue.put_nowait(job)

    async def _enqueue_later(self, job: _Job, delay: float) -> None:
        await asyncio.sleep(delay)
        assert self._queue is not None
        self._queue.put_nowait(job)

    def _drop_queued(self) -> None:
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            try:
                await self._attempt(job, job.attempt, 0.0)
            except Exception:
                log.exception("webhook delivery of %s failed", job.event_id)

    async def _retry(self, job: _Job, attempt: int, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._attempt(job, attempt, delay)

    async def _attempt(self, job: _Job, attempt: int, waited: float) -> None:
        with self._lock:
            if job.generation != self._generation:
                return
            url, secret, policy = self.url, self.secret, self.retry
        record = Delivery(job.event_id, job.type, attempt, job.reason, url, waited, time.time())
        started = time.perf_counter()
        if url is None:
            record.error = "no webhook_url configured"
        else:
            await self._post(url, secret, job.body, policy.timeout_s, record)
        record.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        with self._lock:
            if job.generation != self._generation:
                return
            self._deliveries.append(record)
            if len(self._deliveries) > MAX_DELIVERIES:
                del self._deliveries[: len(self._deliveries) - MAX_DELIVERIES]
            retry = not record.ok and url is not None and attempt < policy.max_attempts
            if not retry:
                self._pending -= 1
            if self._store is not None:
                if retry:
                    due = time.time() + policy.delay(attempt)
                    self._store.reschedule_delivery(job.id, attempt + 1, due)
                else:
                    self._store.delete_delivery(job.id)
        if retry:
            self._spawn(self._retry(job, attempt + 1, policy.delay(attempt)))
        elif not record.ok:
            log.warning("webhook %s %s gave up after %d attempts", job.type, job.event_id, attempt)

    async def _post(
        self, url: str, secret: str | None, body: bytes, timeout_s: float, record: Delivery
    ) -> None:
        assert self._http is not None
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
        if secret:
            headers["Stripe-Signature"] = sign_payload(body, secret)
        try:
            async with self._http.post(
                url,
                data=body,
                headers=headers,
                # Stripe counts a redirect as a failure; it does not follow it.
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                await response.read()
                record.status = response.status
                record.ok = 200 <= response.status < 300
                if not record.ok:
                    record.error = f"HTTP {response.status}"
        except TimeoutError:
            record.error = f"timed out after {timeout_s:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
