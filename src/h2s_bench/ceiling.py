"""Ceiling A: the irreducible work of one new checkout, replayed from a plain asyncio loop.

The work is not written down here: it is *recorded* from the service's own code. One
``CheckoutFlow.begin`` runs in this process over a pool and a payment gateway that log
every call (pool acquire and release, BEGIN/COMMIT, each statement with its arguments and
its result, each Stripe SDK call). The replay then sends exactly those statements, the
SQL text being the constants of ``h2s_checkout.store.checkouts`` and ``store.traces`` as
the flow passed them, through asyncpg, and the Stripe call through the same
``StripeGateway`` to the same emulator; no HTTP server, no state machine, no flow code. If
the service's SQL or the number of its statements changes, the ceiling follows.

Per-checkout values (checkout, order and job ids, email, derived key, request digest,
session id, and any id the database generates, such as the recipient id) are replaced by
fresh ones in every replay; datetimes are shifted to now. Two recordings with different
customers are compared to find the database-generated values and to check that nothing
per-checkout is left unsubstituted (``Compiled.self_check``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import asyncpg
import msgspec
import psutil

from h2s_bench.load import Outcome
from h2s_checkout.api.checkout import to_command
from h2s_checkout.api.schemas import CheckoutRequest
from h2s_checkout.bootstrap import build_gateway, build_services
from h2s_checkout.domain import keys
from h2s_checkout.domain.cart import cart_fingerprint, normalize_address, normalize_email
from h2s_checkout.domain.limits import email_bucket
from h2s_checkout.payments.port import PaymentGateway, ProviderSession, SessionRequest
from h2s_checkout.settings import Settings
from h2s_checkout.store.pool import create_pool
from h2s_checkout.store.traces import utcnow

_SQL_KINDS = ("execute", "fetch", "fetchrow", "fetchval")


@dataclass
class Call:
    kind: str  # acquire release begin commit rollback execute fetch fetchrow fetchval stripe
    slot: int = -1  # which pooled connection (-1: the payment gateway)
    sql: str = ""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    result: Any = None


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.active = False
        self._slots = itertools.count()

    def new_slot(self) -> int:
        return next(self._slots)

    def add(self, call: Call) -> None:
        if self.active:
            self.calls.append(call)


class _RecordingTransaction:
    def __init__(self, tx: Any, rec: _Recorder, slot: int, kwargs: dict[str, Any]) -> None:
        self._tx = tx
        self._rec = rec
        self._slot = slot
        self._kwargs = kwargs

    async def __aenter__(self) -> Any:
        self._rec.add(Call("begin", self._slot, kwargs=self._kwargs))
        return await self._tx.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        self._rec.add(Call("rollback" if exc[0] is not None else "commit", self._slot))
        return await self._tx.__aexit__(*exc)


class _RecordingConnection:
    """An asyncpg connection that logs each statement, its arguments and its result."""

    def __init__(self, conn: asyncpg.Connection, rec: _Recorder, slot: int) -> None:
        self._conn = conn
        self._rec = rec
        self._slot = slot

    async def _call(self, kind: str, sql: str, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        result = await getattr(self._conn, kind)(sql, *args, **kw)
        self._rec.add(Call(kind, self._slot, sql, args, kw, result))
        return result

    async def execute(self, sql: str, *args: Any, **kw: Any) -> Any:
        return await self._call("execute", sql, args, kw)

    async def fetch(self, sql: str, *args: Any, **kw: Any) -> Any:
        return await self._call("fetch", sql, args, kw)

    async def fetchrow(self, sql: str, *args: Any, **kw: Any) -> Any:
        return await self._call("fetchrow", sql, args, kw)

    async def fetchval(self, sql: str, *args: Any, **kw: Any) -> Any:
        return await self._call("fetchval", sql, args, kw)

    def transaction(self, **kwargs: Any) -> _RecordingTransaction:
        tx = self._conn.transaction(**kwargs)
        return _RecordingTransaction(tx, self._rec, self._slot, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _RecordingPool:
    def __init__(self, pool: asyncpg.Pool, rec: _Recorder) -> None:
        self._pool = pool
        self._rec = rec

    @contextlib.asynccontextmanager
    async def acquire(self, **kwargs: Any) -> AsyncIterator[Any]:
        async with self._pool.acquire(**kwargs) as conn:
            slot = self._rec.new_slot()
            self._rec.add(Call("acquire", slot, kwargs=kwargs))
            try:
                yield _RecordingConnection(conn, self._rec, slot)
            finally:
                self._rec.add(Call("release", slot))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class _RecordingGateway:
    """Any PaymentGateway method, logged with its arguments and its result."""

    def __init__(self, gateway: PaymentGateway, rec: _Recorder) -> None:
        self._gateway = gateway
        self._rec = rec

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._gateway, name)
        if name == "close":
            return method

        async def recorded(*args: Any) -> Any:
            result = await method(*args)
            logged = tuple(a.to_dict() if isinstance(a, SessionRequest) else a for a in args)
            self._rec.add(Call("stripe", -1, name, logged, result=result))
            return result

        return recorded


# -- one recorded checkout ------------------------------------------------------------------


@dataclass
class Recording:
    calls: list[Call]
    started_at: datetime
    seeds: dict[str, Any]  # per-checkout values the flow derived from its input and its id


def _flat(result: Any) -> list[Any]:
    """A statement's result as a flat list of scalars (rows in order, columns in order)."""
    if isinstance(result, asyncpg.Record):
        return list(result.values())
    if isinstance(result, list):
        return [v for row in result for v in _flat(row)]
    if isinstance(result, ProviderSession):
        return []
    return [result]


def _shape(calls: Sequence[Call]) -> list[tuple[str, str]]:
    return [(c.kind, c.sql) for c in calls]


def _seeds(
    result_checkout_id: uuid.UUID, body: dict[str, Any], email: str, command: Any
) -> dict[str, Any]:
    seeds: dict[str, Any] = {
        "checkout_id": result_checkout_id,
        "order_id": body["order_id"],
        "job_id": uuid.UUID(body["job_id"]),
        "email": email,
        "derived_key": keys.derived_key(
            normalize_email(email),
            cart_fingerprint(command.items),
            normalize_address(command.customer.address),
        ),
        "request_digest": keys.request_digest(command.request_body),
        # Phase 1's per-email limit counts under this name (domain/limits.py).
        "email_bucket": email_bucket(normalize_email(email)),
    }
    return seeds


def _session_seeds(calls: Sequence[Call]) -> dict[str, Any]:
    for call in calls:
        if call.kind == "stripe" and call.sql == "create_session":
            session: ProviderSession = call.result
            found = {"session_url": session.url, "session_id": session.id}
            if session.request_id:
                found["stripe_request_id"] = session.request_id
            return {k: v for k, v in found.items() if v}
    return {}


async def record_checkouts(
    settings: Settings, bodies: Sequence[bytes], emails: Sequence[str]
) -> list[Recording]:
    """Run the service's CheckoutFlow once per body in this process, logging every call."""
    pool = await create_pool(settings.database_url or "", min_size=1, max_size=2)
    gateway = build_gateway(settings)
    rec = _Recorder()
    try:
        services = build_services(
            settings,
            cast(asyncpg.Pool, _RecordingPool(pool, rec)),
            cast(PaymentGateway, _RecordingGateway(gateway, rec)),
        )
        flow = services.checkout_flow
        await services.catalog.items()  # the catalog is cached: read it outside the recording
        recordings = []
        for body, email in zip(bodies, emails, strict=True):
            command = to_command(msgspec.json.decode(body, type=CheckoutRequest), None)
            rec.calls = []
            started_at = utcnow()
            rec.active = True
            try:
                result = await flow.begin(command)
            finally:
                rec.active = False
            if result.status != 201 or result.replayed or result.body is None:
                raise RuntimeError(f"recording a new checkout got {result.status}: {result.body}")
            seeds = _seeds(result.checkout_id, result.body, email, command)
            seeds |= _session_seeds(rec.calls)
            recordings.append(Recording(rec.calls, started_at, seeds))
        return recordings
    finally:
        await gateway.close()
        await pool.close()


# -- compiled replay ------------------------------------------------------------------------

Ctx = dict[str, Any]
Render = Callable[[Ctx], Any]
_SHIFT = "__shift__"
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


def _texts(tokens: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in tokens.items() if value is not None}


class _Compiler:
    """Turns recorded arguments into functions of the replay's fresh values."""

    def __init__(self, tokens: dict[str, Any]) -> None:
        texts = _texts(tokens)
        self._exact = {v: k for k, v in tokens.items() if isinstance(v, uuid.UUID)}
        self._by_text = {v: k for k, v in texts.items()}
        ordered = sorted(texts.values(), key=len, reverse=True)
        alternatives = "|".join(map(re.escape, ordered))
        self._pattern = re.compile(f"({alternatives})") if ordered else None

    def compile(self, value: Any) -> Render | None:
        """None: the value is sent as recorded."""
        if isinstance(value, uuid.UUID):
            name = self._exact.get(value)
            return None if name is None else (lambda ctx: ctx[name])
        if isinstance(value, str):
            document = _json_object(value)
            if document is not None:
                # A JSON document sent as text (phase 1's new checkout): its values are
                # substituted as a dict's, and the text encoded again, as the flow does.
                inner = self.compile(document)
                return None if inner is None else (lambda ctx: _encode_json(inner(ctx)))
            return self._compile_text(value)
        if isinstance(value, datetime):
            return lambda ctx: value + ctx[_SHIFT]
        if isinstance(value, dict):
            parts = {k: self.compile(v) for k, v in value.items()}
            if all(p is None for p in parts.values()):
                return None
            return lambda ctx: {k: (p(ctx) if p else value[k]) for k, p in parts.items()}
        if isinstance(value, list | tuple):
            items = [self.compile(v) for v in value]
            if all(p is None for p in items):
                return None
            kind = type(value)
            return lambda ctx: kind(p(ctx) if p else v for p, v in zip(items, value, strict=True))
        return None

    def _compile_text(self, value: str) -> Render | None:
        if self._pattern is None:
            return None
        pieces = self._pattern.split(value)
        if len(pieces) == 1:
            return None
        # split() with one group alternates literal, token, literal, ...
        names = {i: self._by_text[p] for i, p in enumerate(pieces) if i % 2 == 1}

        def render(ctx: Ctx) -> str:
            texts: dict[str, str] = ctx["__texts__"]
            return "".join(texts[names[i]] if i % 2 else p for i, p in enumerate(pieces))

        return render


@dataclass
class _Step:
    kind: str
    slot: int
    sql: str
    args: list[tuple[Any, Render | None]]
    kwargs: dict[str, Any]
    learn: list[tuple[int, str]]  # (position in the flat result, token name)


@dataclass
class Compiled:
    """A recorded checkout ready to be replayed with fresh per-checkout values."""

    steps: list[_Step]
    recorded_at: datetime
    seeds: dict[str, Any]
    learned: list[str]
    self_check: list[str]  # values that differed between two recordings and were not replaced
    statements: int = 0
    transactions: int = 0
    acquires: int = 0
    stripe_calls: int = 0

    def render(self, step: _Step, ctx: Ctx) -> list[Any]:
        return [value if render is None else render(ctx) for value, render in step.args]


def _learned_tokens(a: Recording, b: Recording) -> dict[tuple[int, int], tuple[Any, Any]]:
    """Result values (ids, keys) that differ between two recordings: made per checkout."""
    found = {}
    for i, (ca, cb) in enumerate(zip(a.calls, b.calls, strict=True)):
        if ca.kind not in _SQL_KINDS:
            continue
        for j, (va, vb) in enumerate(zip(_flat(ca.result), _flat(cb.result), strict=False)):
            if va == vb or type(va) is not type(vb):
                continue
            if isinstance(va, uuid.UUID) or (isinstance(va, str) and len(va) >= 8):
                found[(i, j)] = (va, vb)
    return found


def _ignorable(value: Any) -> bool:
    """Times and durations differ between any two checkouts and are left as recorded."""
    return (
        isinstance(value, datetime | float | timedelta)
        or (isinstance(value, int) and not isinstance(value, bool) and value > 10**9)
        or (isinstance(value, str) and bool(_ISO.match(value)))
    )


def _json_object(value: str) -> dict[str, Any] | None:
    """The object a string holds as JSON text, if it is one."""
    if not value.startswith("{"):
        return None
    try:
        found = msgspec.json.decode(value)
    except msgspec.DecodeError:
        return None
    return found if isinstance(found, dict) else None


def _encode_json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, str) and isinstance(b, str):
        a = _json_object(a) or a
        b = _json_object(b) or b
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        for k in a:
            _diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b and not (_ignorable(a) and _ignorable(b)):
        out.append(f"{path}: {str(a)[:60]!r} vs {str(b)[:60]!r}")


def compile_recordings(a: Recording, b: Recording) -> Compiled:
    """Compile recording ``a``; ``b`` (another customer) finds the database-made values and
    checks the substitution: ``b`` rendered with ``a``'s values must equal ``a``."""
    if _shape(a.calls) != _shape(b.calls):
        raise RuntimeError("two recordings of a new checkout made different calls")
    learned_pairs = _learned_tokens(a, b)
    # A result value the seeds already explain (say, the checkout's own derived key read
    # back) is not a new token; only what the database made up (the recipient id) is.
    seed_compiler_b = _Compiler(b.seeds)
    ctx_a: Ctx = {**a.seeds, "__texts__": _texts(a.seeds), _SHIFT: timedelta(0)}
    learned: dict[tuple[int, int], str] = {}
    for (i, j), (va, vb) in sorted(learned_pairs.items()):
        render = seed_compiler_b.compile(vb)
        if render is not None and render(ctx_a) == va:
            continue
        learned[(i, j)] = f"db{i}_{j}"

    def steps_for(rec: Recording, learned_values: dict[str, Any]) -> list[_Step]:
        steps = []
        tokens = dict(rec.seeds)
        compiler = _Compiler(tokens)
        for i, call in enumerate(rec.calls):
            args = [(v, compiler.compile(v)) for v in call.args]
            learn = [(j, name) for (ci, j), name in learned.items() if ci == i]
            steps.append(_Step(call.kind, call.slot, call.sql, args, call.kwargs, learn))
            if learn:
                for j, name in learn:
                    tokens[name] = learned_values[name][j]
                compiler = _Compiler(tokens)
        return steps

    values_a = {name: _flat(a.calls[i].result) for (i, _j), name in learned.items()}
    values_b = {name: _flat(b.calls[i].result) for (i, _j), name in learned.items()}
    steps_a = steps_for(a, values_a)
    steps_b = steps_for(b, values_b)

    # Self-check: b's steps rendered with a's values must give a's arguments.
    check_ctx: Ctx = {**a.seeds, _SHIFT: timedelta(0)}
    for (_i, j), name in learned.items():
        check_ctx[name] = values_a[name][j]
    check_ctx["__texts__"] = _texts({k: v for k, v in check_ctx.items() if not k.startswith("_")})
    mismatches: list[str] = []
    for i, (step_b, call_a) in enumerate(zip(steps_b, a.calls, strict=True)):
        rendered = [value if r is None else r(check_ctx) for value, r in step_b.args]
        _diff(list(call_a.args), rendered, f"call {i} {call_a.kind} {_label(call_a)}", mismatches)

    kinds = [c.kind for c in a.calls]
    return Compiled(
        steps=steps_a,
        recorded_at=a.started_at,
        seeds=a.seeds,
        learned=sorted(learned.values()),
        self_check=mismatches,
        statements=sum(k in _SQL_KINDS for k in kinds),
        transactions=kinds.count("begin"),
        acquires=kinds.count("acquire"),
        stripe_calls=kinds.count("stripe"),
    )


def _label(call: Call) -> str:
    return " ".join(call.sql.split())[:50]


# -- the replay loop ------------------------------------------------------------------------


def _fresh_seeds(compiled: Compiled, tag: str, n: int) -> dict[str, Any]:
    checkout_id = keys.new_checkout_id()
    digest = hashlib.sha256(checkout_id.bytes).hexdigest()
    fresh: dict[str, Any] = {
        "checkout_id": checkout_id,
        "order_id": keys.order_id_for(checkout_id),
        "job_id": keys.job_id_for(checkout_id),
        "email": f"ceiling-{tag}-{n}@example.com",
        "derived_key": digest,
        "request_digest": hashlib.sha256(digest.encode()).hexdigest(),
    }
    fresh["email_bucket"] = email_bucket(normalize_email(fresh["email"]))
    old = compiled.seeds
    if "session_id" in old:  # replaced by the real session when Stripe is called
        fresh["session_id"] = "cs_test_bench" + checkout_id.hex
        if "session_url" in old:
            fresh["session_url"] = str(old["session_url"]).replace(
                old["session_id"], fresh["session_id"]
            )
    if "stripe_request_id" in old:
        fresh["stripe_request_id"] = "req_bench" + checkout_id.hex[:14]
    return fresh


async def replay_once(
    compiled: Compiled, pool: asyncpg.Pool, gateway: PaymentGateway | None, tag: str, n: int
) -> None:
    """One checkout's statements (and, with a gateway, its Stripe call) with fresh values."""
    ctx: Ctx = _fresh_seeds(compiled, tag, n)
    ctx[_SHIFT] = utcnow() - compiled.recorded_at
    ctx["__texts__"] = _texts({k: v for k, v in ctx.items() if not k.startswith("_")})
    held: dict[int, tuple[Any, asyncpg.Connection]] = {}
    open_tx: dict[int, Any] = {}
    try:
        for step in compiled.steps:
            kind = step.kind
            if kind == "acquire":
                cm = pool.acquire(**step.kwargs)
                held[step.slot] = (cm, await cm.__aenter__())
            elif kind == "release":
                cm, _conn = held.pop(step.slot)
                await cm.__aexit__(None, None, None)
            elif kind == "begin":
                tx = held[step.slot][1].transaction(**step.kwargs)
                await tx.start()
                open_tx[step.slot] = tx
            elif kind == "commit":
                await open_tx.pop(step.slot).commit()
            elif kind == "rollback":
                await open_tx.pop(step.slot).rollback()
            elif kind == "stripe":
                await _replay_stripe(compiled, step, gateway, ctx)
            else:
                conn = held[step.slot][1]
                result = await getattr(conn, kind)(
                    step.sql, *compiled.render(step, ctx), **step.kwargs
                )
                if step.learn:
                    flat = _flat(result)
                    for j, name in step.learn:
                        ctx[name] = flat[j]
                        ctx["__texts__"][name] = str(flat[j])
    finally:
        for tx in open_tx.values():
            with contextlib.suppress(Exception):
                await tx.rollback()
        for cm, _conn in held.values():
            with contextlib.suppress(Exception):
                await cm.__aexit__(None, None, None)


async def _replay_stripe(
    compiled: Compiled, step: _Step, gateway: PaymentGateway | None, ctx: Ctx
) -> None:
    if gateway is None:  # ceiling A-sql: the session id stays the synthetic one
        return
    args = compiled.render(step, ctx)
    if step.sql != "create_session":
        await getattr(gateway, step.sql)(*args)
        return
    session = await gateway.create_session(SessionRequest.from_dict(args[0]))
    texts = ctx["__texts__"]
    for name, value in (
        ("session_id", session.id),
        ("session_url", session.url),
        ("stripe_request_id", session.request_id),
    ):
        if name in ctx and value:
            ctx[name] = value
            texts[name] = value


async def run_ceiling(
    name: str,
    compiled: Compiled,
    settings: Settings,
    *,
    with_stripe: bool,
    clients: int,
    duration_s: float,
    max_count: int,
    tag: str,
    meter: contextlib.AbstractContextManager[Any] | None = None,
) -> Outcome:
    """``clients`` tasks replaying checkouts for ``duration_s`` (at most ``max_count``);
    ``meter`` is entered around the measured part only (not the warm-up, not the close)."""
    pool = await create_pool(
        settings.database_url or "", min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    gateway = build_gateway(settings) if with_stripe else None
    outcome = Outcome(name, clients)
    counter = itertools.count()
    me = psutil.Process()
    try:
        # Warm the pool's connections and their prepared statements, as the server's are.
        warm = await asyncio.gather(
            *(replay_once(compiled, pool, gateway, f"{tag}-warm", i) for i in range(clients)),
            return_exceptions=True,
        )
        failed = [w for w in warm if isinstance(w, BaseException)]
        if failed:
            outcome.first_error = f"{type(failed[0]).__name__}: {failed[0]}"
        cpu0 = sum(me.cpu_times()[:2])
        started = time.monotonic()
        deadline = started + duration_s

        async def worker() -> None:
            while time.monotonic() < deadline:
                n = next(counter)
                if n >= max_count:
                    return
                t0 = time.perf_counter()
                try:
                    await replay_once(compiled, pool, gateway, tag, n)
                except Exception as exc:
                    outcome.errors += 1
                    outcome.first_error = outcome.first_error or f"{type(exc).__name__}: {exc}"
                    continue
                outcome.ok += 1
                outcome.latencies_ms.append((time.perf_counter() - t0) * 1000)

        with meter or contextlib.nullcontext():
            await asyncio.gather(*(worker() for _ in range(clients)))
        outcome.elapsed_s = time.monotonic() - started
        outcome.generator_cores = (sum(me.cpu_times()[:2]) - cpu0) / outcome.elapsed_s
    finally:
        if gateway is not None:
            await gateway.close()
        await pool.close()
    return outcome
