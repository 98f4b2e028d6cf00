"""The load generator: closed-loop aiohttp clients, bounded in time and in count.

Each client sends one request at a time and the next as soon as the answer is read. A 409
(a duplicate still in flight) is counted and retried after its ``Retry-After``; the
latency of such a request runs from its first send to its final answer.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import msgspec
import psutil

JSON_HEADERS = {"Content-Type": "application/json"}
MAX_409_RETRIES = 20
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Req:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] | None = None


@dataclass
class Outcome:
    """What one workload measured."""

    name: str
    clients: int
    elapsed_s: float = 0.0
    ok: int = 0
    replayed: int = 0
    conflicts_409: int = 0
    errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    # Requests sent in the loop's first ``warm_s``: answered and counted, their latencies
    # kept apart (the clients all start in the same instant, which steady load never does).
    warm_latencies_ms: list[float] = field(default_factory=list)
    generator_cores: float = 0.0
    first_error: str = ""
    ok_bodies: list[bytes] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Successful answers per second of wall time."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def pct(self, p: float) -> float:
        """The p-th percentile of successful latencies (nearest rank), in ms; requests
        sent in a warm-up at the start are not among them."""
        return _nearest_rank(self.latencies_ms, p)

    def pct_from_start(self, p: float) -> float:
        """The same, the warm-up's requests included."""
        return _nearest_rank(self.latencies_ms + self.warm_latencies_ms, p)

    def summary(self) -> str:
        bad = {k: v for k, v in self.statuses.items() if k not in (200, 201)}
        extra = f" non-2xx {dict(bad)}" if bad else ""
        extra += f" errors {self.errors}" if self.errors else ""
        extra += f" 409s {self.conflicts_409}" if self.conflicts_409 else ""
        return (
            f"{self.name}: {self.ok} ok in {self.elapsed_s:.1f} s = {self.rate:.0f}/s, "
            f"p50 {self.pct(50):.1f} p99 {self.pct(99):.1f} ms "
            f"(generator {self.generator_cores:.2f} cores){extra}"
        )


def _nearest_rank(values: Sequence[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(p / 100 * len(ordered)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def pooled(name: str, outcomes: Sequence[Outcome]) -> Outcome:
    """Several runs of one workload as one: answers over the sum of their times, latencies
    together (the rounds of a side-by-side comparison)."""
    total = Outcome(name, max((o.clients for o in outcomes), default=0))
    for o in outcomes:
        total.elapsed_s += o.elapsed_s
        total.ok += o.ok
        total.replayed += o.replayed
        total.conflicts_409 += o.conflicts_409
        total.errors += o.errors
        total.statuses.update(o.statuses)
        total.latencies_ms.extend(o.latencies_ms)
        total.warm_latencies_ms.extend(o.warm_latencies_ms)
        total.generator_cores += o.generator_cores * o.elapsed_s
        total.first_error = total.first_error or o.first_error
    if total.elapsed_s > 0:
        total.generator_cores /= total.elapsed_s
    return total


def _retry_after_s(value: str | None) -> float:
    try:
        return min(max(float(value or 1), 0.05), 5.0)
    except ValueError:
        return 1.0


async def closed_loop(
    name: str,
    base_urls: Sequence[str],
    make: Callable[[int], Req],
    *,
    clients: int,
    duration_s: float,
    max_requests: int,
    expect_status: int = 200,
    keep_bodies: int = 0,
    warm_s: float = 0.0,
) -> Outcome:
    """``clients`` loops until ``duration_s`` or ``max_requests`` sends, whichever first.

    Client ``i`` talks to ``base_urls[i % len(base_urls)]`` (a connection-level balancer).
    Requests ``make(n)`` for n = 0, 1, ...; the first ``keep_bodies`` successful request
    bodies are kept in ``ok_bodies`` (the stored checkouts that replays will send again).
    The latencies of requests sent in the first ``warm_s`` go to ``warm_latencies_ms``;
    every answer counts in the rate.
    """
    # The generator's own full collections would pause its clients and count as the
    # server's latency: what the run made so far is kept out of them (as a worker keeps
    # its start-up objects, h2s_checkout/gc_pauses.py; the generator is not what is measured,
    # so it does not borrow the service's code for it).
    gc.collect()
    gc.freeze()
    outcome = Outcome(name, clients)
    counter = itertools.count()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    me = psutil.Process()
    cpu0 = sum(me.cpu_times()[:2])
    started = time.monotonic()
    deadline = started + duration_s
    warm_until = started + warm_s
    hard_stop = deadline + REQUEST_TIMEOUT_S * 2

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:

        async def client(index: int) -> None:
            base = base_urls[index % len(base_urls)]
            while time.monotonic() < deadline:
                n = next(counter)
                if n >= max_requests:
                    return
                req = make(n)
                headers = {**JSON_HEADERS, **(req.headers or {})} if req.body else req.headers
                warm = time.monotonic() < warm_until
                t0 = time.perf_counter()
                for _attempt in range(MAX_409_RETRIES + 1):
                    try:
                        async with session.request(
                            req.method, base + req.path, data=req.body, headers=headers
                        ) as answer:
                            await answer.read()
                            status = answer.status
                            replayed = answer.headers.get("Idempotent-Replayed") == "true"
                            retry_after = answer.headers.get("Retry-After")
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        outcome.errors += 1
                        outcome.first_error = outcome.first_error or repr(exc)
                        break
                    outcome.statuses[status] += 1
                    if status == 409 and time.monotonic() < hard_stop:
                        outcome.conflicts_409 += 1
                        await asyncio.sleep(_retry_after_s(retry_after))
                        continue
                    if status == expect_status:
                        outcome.ok += 1
                        outcome.replayed += replayed
                        kept = outcome.warm_latencies_ms if warm else outcome.latencies_ms
                        kept.append((time.perf_counter() - t0) * 1000)
                        if len(outcome.ok_bodies) < keep_bodies and req.body is not None:
                            outcome.ok_bodies.append(req.body)
                    break

        await asyncio.gather(*(client(i) for i in range(clients)))
    outcome.elapsed_s = time.monotonic() - started
    outcome.generator_cores = (sum(me.cpu_times()[:2]) - cpu0) / outcome.elapsed_s
    return outcome


# -- request bodies -------------------------------------------------------------------------

_ADDRESS = {
    "line1": "1 Main St",
    "city": "Austin",
    "state": "TX",
    "postal_code": "78701",
    "country": "US",
}


def checkout_body(email: str, sku: str, quantity: int = 1) -> bytes:
    """A storefront's POST /api/checkout body, JSON-encoded."""
    return msgspec.json.encode(
        {
            "customer": {
                "email": email,
                "name": "Bench Customer",
                "phone": "+15555550100",
                "address": _ADDRESS,
            },
            "items": [{"sku": sku, "quantity": quantity}],
        }
    )


def new_checkouts(run: str, tag: str, skus: Sequence[str]) -> Callable[[int], Req]:
    """Request n is a new checkout: its email is unique to (run, tag, n)."""

    def make(n: int) -> Req:
        email = f"bench-{run}-{tag}-{n}@example.com"
        return Req("POST", "/api/checkout", checkout_body(email, skus[n % len(skus)]))

    return make


def replays(bodies: Sequence[bytes]) -> Callable[[int], Req]:
    """Request n sends a stored checkout's exact body again (same email and cart)."""

    def make(n: int) -> Req:
        return Req("POST", "/api/checkout", bodies[n % len(bodies)])

    return make


def fixed(path: str, headers: dict[str, str] | None = None) -> Callable[[int], Req]:
    request = Req("GET", path, headers=headers)
    return lambda _n: request


# -- issue 3: duplicates in flight over several servers --------------------------------------


@dataclass
class StormResult:
    """N distinct carts, each sent ``copies`` times at once, spread over the servers."""

    carts: int
    copies: int
    servers: int
    elapsed_s: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    conflicts_409: int = 0
    errors: int = 0
    new_answers: int = 0
    replayed_answers: int = 0
    order_ids: set[str] = field(default_factory=set)
    carts_with_one_order: int = 0
    replay_attempt_ms: list[float] = field(default_factory=list)  # the attempt that replayed
    replay_total_ms: list[float] = field(default_factory=list)  # first send to replayed answer
    new_ms: list[float] = field(default_factory=list)
    orders_in_db: int = -1
    resumed_steps: int = -1  # `checkout.resumed` trace steps of these checkouts

    @staticmethod
    def pct(values: list[float], p: float) -> float:
        if not values:
            return math.nan
        ordered = sorted(values)
        return ordered[min(max(math.ceil(p / 100 * len(ordered)) - 1, 0), len(ordered) - 1)]


async def duplicate_storm(
    base_urls: Sequence[str],
    bodies: Sequence[bytes],
    *,
    copies: int,
    in_flight: int,
    time_limit_s: float = 120.0,
) -> StormResult:
    """Send each body ``copies`` times at once; request k goes to ``base_urls[k % n]``.

    At most ``in_flight`` requests are open at a time, taken in cart order, so the copies
    of one cart are in flight together. 409s are retried after their Retry-After.
    """
    result = StormResult(len(bodies), copies, len(base_urls))
    gate = asyncio.Semaphore(in_flight)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    hard_stop = time.monotonic() + time_limit_s
    per_cart: dict[int, set[str]] = {i: set() for i in range(len(bodies))}

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(k: int) -> None:
            cart = k // copies
            url = base_urls[k % len(base_urls)] + "/api/checkout"
            async with gate:
                first = time.perf_counter()
                for _attempt in range(MAX_409_RETRIES + 1):
                    sent = time.perf_counter()
                    try:
                        async with session.post(
                            url, data=bodies[cart], headers=JSON_HEADERS
                        ) as answer:
                            payload = await answer.read()
                            status = answer.status
                            replayed = answer.headers.get("Idempotent-Replayed") == "true"
                            retry_after = answer.headers.get("Retry-After")
                    except (aiohttp.ClientError, TimeoutError):
                        result.errors += 1
                        return
                    done = time.perf_counter()
                    result.statuses[status] += 1
                    if status == 409 and time.monotonic() < hard_stop:
                        result.conflicts_409 += 1
                        await asyncio.sleep(_retry_after_s(retry_after))
                        continue
                    if status == 201:
                        order_id = str(msgspec.json.decode(payload).get("order_id"))
                        result.order_ids.add(order_id)
                        per_cart[cart].add(order_id)
                        if replayed:
                            result.replayed_answers += 1
                            result.replay_attempt_ms.append((done - sent) * 1000)
                            result.replay_total_ms.append((done - first) * 1000)
                        else:
                            result.new_answers += 1
                            result.new_ms.append((done - first) * 1000)
                    return

        started = time.monotonic()
        await asyncio.gather(*(one(k) for k in range(len(bodies) * copies)))
        result.elapsed_s = time.monotonic() - started
    result.carts_with_one_order = sum(len(ids) == 1 for ids in per_cart.values())
    return result
