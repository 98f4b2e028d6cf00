"""The emulator's state in one SQLite file, written through on every change (opt-in).

A Stripe account does not forget its sessions when a laptop restarts, so the
embedded stack's emulator keeps here what a later start needs: the API objects
(sessions and their line items, payment intents, charges, refunds and the
outcomes planned for pending refunds), stored
idempotent answers, the event log, the webhook deliveries not yet done,
delayed payments waiting for their outcome, and the clock offset. Requests,
faults and delivery attempts are diagnostics of one run and stay in memory.

Writes made while `EmulatorState`'s lock is held by a thread are collected and
committed in one transaction when that thread releases the lock (`guard`), so
a change and the event it publishes reach the disk together or not at all; a
write from elsewhere (the delivery loop) commits at once. Each commit is
fsynced: a SIGKILL loses at most the change in flight.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

SCHEMA_VERSION = 1

_SCHEMA = """
create table if not exists objects (
    kind text not null,
    id text not null,
    body text not null,
    primary key (kind, id)
);
create table if not exists idempotency (
    api_key text not null,
    key text not null,
    method text not null,
    path text not null,
    params text not null,
    status integer not null,
    body blob not null,
    request_id text not null,
    primary key (api_key, key)
);
create table if not exists events (id text primary key, body text not null);
create table if not exists deliveries (
    job_id text primary key,
    event_id text not null,
    type text not null,
    body blob not null,
    reason text not null,
    attempt integer not null,
    due_at real not null
);
create table if not exists delayed_payments (
    session_id text primary key,
    due real,
    succeeds integer not null
);
create table if not exists meta (name text primary key, value text not null);
"""

# An upsert keeps the row's rowid, so "order by rowid" stays creation order.
_PUT_OBJECT = """
insert into objects (kind, id, body) values (?, ?, ?)
on conflict (kind, id) do update set body = excluded.body
"""
_DELETE_OBJECT = "delete from objects where kind = ? and id = ?"
_PUT_IDEMPOTENT = """
insert or replace into idempotency
    (api_key, key, method, path, params, status, body, request_id)
values (?, ?, ?, ?, ?, ?, ?, ?)
"""
_DELETE_IDEMPOTENT = "delete from idempotency where api_key = ? and key = ?"
_PUT_EVENT = "insert or replace into events (id, body) values (?, ?)"
_DELETE_EVENT = "delete from events where id = ?"
_PUT_DELIVERY = """
insert or replace into deliveries (job_id, event_id, type, body, reason, attempt, due_at)
values (?, ?, ?, ?, ?, ?, ?)
"""
_RESCHEDULE_DELIVERY = "update deliveries set attempt = ?, due_at = ? where job_id = ?"
_DELETE_DELIVERY = "delete from deliveries where job_id = ?"
_PUT_DELAYED_PAYMENT = (
    "insert or replace into delayed_payments (session_id, due, succeeds) values (?, ?, ?)"
)
_DELETE_DELAYED_PAYMENT = "delete from delayed_payments where session_id = ?"
_PUT_META = "insert or replace into meta (name, value) values (?, ?)"
_CLEAR = (
    "delete from objects",
    "delete from idempotency",
    "delete from events",
    "delete from deliveries",
    "delete from delayed_payments",
    "delete from meta",
)


class IdempotencyRow(NamedTuple):
    api_key: str
    key: str
    method: str
    path: str
    params: dict[str, Any]
    status: int
    body: bytes
    request_id: str


class DeliveryRow(NamedTuple):
    job_id: str
    event_id: str
    type: str
    body: bytes
    reason: str
    attempt: int  # the next attempt to make, 1-based
    due_at: float  # wall clock


class StateFileError(RuntimeError):
    """The state file cannot be used (written by another version, or not SQLite)."""


class StateFile:
    """One SQLite database; every method is thread-safe."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): transactions are opened explicitly.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()  # innermost: nothing else is taken while it is held
        self._local = threading.local()
        try:
            self._db.execute("pragma journal_mode = wal")
            self._db.execute("pragma synchronous = full")
            version = self._db.execute("pragma user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StateFileError(
                    f"{self.path} holds emulator state of format {version}, this emulator "
                    f"reads format {SCHEMA_VERSION}; move the file away to start afresh"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"pragma user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StateFileError(f"{self.path} is not a usable emulator state file: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- batching --------------------------------------------------------------

    def guard(self, lock: threading.RLock) -> _Guard:
        """`lock` as a context manager that also batches this thread's writes."""
        return _Guard(lock, self)

    def _begin(self) -> None:
        local = self._local
        depth = getattr(local, "depth", 0)
        if depth == 0:
            local.ops = []
        local.depth = depth + 1

    def _end(self) -> None:
        local = self._local
        local.depth -= 1
        if local.depth == 0:
            ops, local.ops = local.ops, []
            if ops:
                self._commit(ops)

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        if getattr(self._local, "depth", 0):
            self._local.ops.append((sql, params))
        else:
            self._commit([(sql, params)])

    def _commit(self, ops: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self._lock:
            self._db.execute("begin immediate")
            try:
                for sql, params in ops:
                    self._db.execute(sql, params)
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit")

    # -- writes ----------------------------------------------------------------

    def put_object(self, kind: str, ident: str, body: Any) -> None:
        """Store (or replace) the JSON `body` of one API object, e.g. a session."""
        self._write(_PUT_OBJECT, (kind, ident, json.dumps(body)))

    def delete_object(self, kind: str, ident: str) -> None:
        self._write(_DELETE_OBJECT, (kind, ident))

    def put_idempotent(self, row: IdempotencyRow) -> None:
        self._write(_PUT_IDEMPOTENT, (*row[:4], json.dumps(row.params), *row[5:]))

    def delete_idempotent(self, api_key: str, key: str) -> None:
        self._write(_DELETE_IDEMPOTENT, (api_key, key))

    def put_event(self, event: dict[str, Any]) -> None:
        self._write(_PUT_EVENT, (event["id"], json.dumps(event)))

    def delete_event(self, event_id: str) -> None:
        self._write(_DELETE_EVENT, (event_id,))

    def put_delivery(self, row: DeliveryRow) -> None:
        self._write(_PUT_DELIVERY, tuple(row))

    def reschedule_delivery(self, job_id: str, attempt: int, due_at: float) -> None:
        self._write(_RESCHEDULE_DELIVERY, (attempt, due_at, job_id))

    def delete_delivery(self, job_id: str) -> None:
        self._write(_DELETE_DELIVERY, (job_id,))

    def put_delayed_payment(self, session_id: str, due: float | None, succeeds: bool) -> None:
        self._write(_PUT_DELAYED_PAYMENT, (session_id, due, int(succeeds)))

    def delete_delayed_payment(self, session_id: str) -> None:
        self._write(_DELETE_DELAYED_PAYMENT, (session_id,))

    def put_meta(self, name: str, value: Any) -> None:
        self._write(_PUT_META, (name, json.dumps(value)))

    def clear(self) -> None:
        for sql in _CLEAR:
            self._write(sql)

    # -- reads (at start) ------------------------------------------------------

    def objects(self, kind: str) -> list[Any]:
        """The bodies of one kind of object, oldest first."""
        rows = self._read("select body from objects where kind = ? order by rowid", (kind,))
        return [json.loads(body) for (body,) in rows]

    def object_map(self, kind: str) -> dict[str, Any]:
        rows = self._read("select id, body from objects where kind = ? order by rowid", (kind,))
        return {ident: json.loads(body) for ident, body in rows}

    def idempotency(self) -> list[IdempotencyRow]:
        rows = self._read(
            "select api_key, key, method, path, params, status, body, request_id"
            " from idempotency order by rowid"
        )
        return [
            IdempotencyRow(a, k, m, p, json.loads(params), s, bytes(b), r)
            for a, k, m, p, params, s, b, r in rows
        ]

    def events(self) -> list[dict[str, Any]]:
        rows = self._read("select body from events order by rowid")
        return [json.loads(body) for (body,) in rows]

    def deliveries(self) -> list[DeliveryRow]:
        rows = self._read(
            "select job_id, event_id, type, body, reason, attempt, due_at"
            " from deliveries order by rowid"
        )
        return [DeliveryRow(j, e, t, bytes(b), r, a, d) for j, e, t, b, r, a, d in rows]

    def delayed_payments(self) -> dict[str, tuple[float | None, bool]]:
        rows = self._read("select session_id, due, succeeds from delayed_payments order by rowid")
        return {sid: (due, bool(ok)) for sid, due, ok in rows}

    def meta(self, name: str, default: Any = None) -> Any:
        rows = self._read("select value from meta where name = ?", (name,))
        return json.loads(rows[0][0]) if rows else default

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()


class _Guard:
    """Holds the state's lock; the outermost exit commits the writes made meanwhile."""

    __slots__ = ("_lock", "_store")

    def __init__(self, lock: threading.RLock, store: StateFile) -> None:
        self._lock = lock
        self._store = store

    def __enter__(self) -> None:
        self._lock.acquire()
        self._store._begin()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Written even after an exception: memory already holds what was done,
        # and the file must say the same.
        try:
            self._store._end()
        finally:
            self._lock.release()
