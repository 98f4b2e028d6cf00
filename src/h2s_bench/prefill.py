"""`--prefill N`: N finished checkouts over the last 90 days, written by SQL alone.

A plan row per checkout is drawn first (its customer, its outcome, its times, its cart),
into a temporary table; then one ``insert ... select`` per table writes the rows the
service would have written for it: recipient, checkout, order, dispatch job, trace rows,
webhook event, failure. Nothing goes through HTTP, so a million checkouts take minutes.

Shares, as a shop might see them: 85% paid, 12% expired, 3% cleaned (the Stripe call
failed), every customer with about three checkouts, a quarter of the checkouts sent with
an ``Idempotency-Key`` (kept 72 h, then reaped), one in twenty answered once more as a
replay. Beyond the N finished checkouts, the last 50 minutes hold open sessions (about
one an hour's worth of checkouts, at the same pace), as a live shop has: the reconciler
and the doctor look at them and find nothing due.

Each statement names its columns: a column added later with a default gets its default;
one added without a default, a renamed column or a changed state name makes the
statement fail, and the harness stops with that error and this module's name. The trace
rows and the webhook payload copy what a checkout wrote on the emulator at the time of
writing (``bench/prefill.py`` is the place to follow the service when that changes); the
webhook payload is trimmed to the fields the service reads, plus a few.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

# Shares of the finished checkouts.
PAID_SHARE = 0.85
EXPIRED_SHARE = 0.12  # the rest is cleaned
CLIENT_KEY_SHARE = 0.25
REPLAYED_SHARE = 0.05
CHECKOUTS_PER_CUSTOMER = 3
DAYS = 90

PLAN_TABLE = "h2s_bench_prefill_plan"

# One row per checkout: everything the other statements need, drawn once. Unlogged (no
# WAL) and not temporary: the writers read it from connections of their own.
_CREATE_PLAN = """
create unlogged table h2s_bench_prefill_plan (
    i int not null,
    checkout_id uuid, order_id text, job_id uuid, recipient_id uuid,
    email text, customer_name text, phone text,
    outcome text, client_key boolean, replayed boolean,
    sku text, sku_name text, quantity int, unit_amount_cents int, currency text,
    total_cents int, cart_fingerprint text, fingerprint text,
    sequence_id text, step_id text,
    created_at timestamptz, expires_at timestamptz, paid_at timestamptz,
    settled_at timestamptz,
    session_id text, event_id text, request_id text
)
"""

_DROP_PLAN = "drop table if exists h2s_bench_prefill_plan"

_FILL_PLAN = """
insert into h2s_bench_prefill_plan
with params as (
    select $1::int as finished, $2::int as open_sessions, $3::int as customers,
           $4::text as salt, $5::timestamptz as now, $6::float8 as paid_share,
           $7::float8 as expired_share, $8::float8 as client_key_share,
           $9::float8 as replayed_share
), catalog as (
    select row_number() over (order by sku) - 1 as k, sku, name, unit_amount_cents, currency
    from h2s_service_catalog where active
), start_step as (
    select q.sequence_id, st.step_id
    from h2s_dispatch_sequences q
    join h2s_dispatch_steps st on st.sequence_id = q.sequence_id and st.is_start
    where q.is_default
), drawn as (
    select g.i, p.salt,
           md5(p.salt || ':checkout:' || g.i)::uuid as checkout_id,
           1 + floor(random() * p.customers)::int as customer,
           case when g.i > p.finished then 'session_created'
                when g.outcome_draw < p.paid_share then 'paid'
                when g.outcome_draw < p.paid_share + p.expired_share then 'expired'
                else 'cleaned' end as outcome,
           floor(random() * (select count(*) from catalog))::int as k,
           1 + (random() < 0.2)::int as quantity,
           random() < p.client_key_share as client_key,
           random() < p.replayed_share as replayed,
           -- finished ones spread evenly over the days up to an hour ago; open ones over
           -- the last 50 minutes
           case when g.i <= p.finished
                then p.now - interval '{days} days' + (g.i - 1 + random())
                     * (interval '{days} days' - interval '1 hour') / p.finished
                else p.now - interval '50 minutes' + (g.i - p.finished - 1 + random())
                     * interval '49 minutes' / greatest(p.open_sessions, 1)
           end as created_at,
           interval '1 minute' + random() * interval '29 minutes' as time_to_pay
    from params p
    cross join lateral (
        select i, random() as outcome_draw
        from generate_series(1, p.finished + p.open_sessions) as i
    ) as g
)
select d.i,
       d.checkout_id,
       'ORD-' || upper(left(replace(d.checkout_id::text, '-', ''), 16)),
       md5(d.salt || ':job:' || d.i)::uuid,
       md5(d.salt || ':recipient:' || d.customer)::uuid,
       'customer-' || d.salt || '-' || d.customer || '@example.com',
       'Customer ' || d.customer,
       '+1555' || lpad((d.customer % 10000000)::text, 7, '0'),
       d.outcome, d.client_key, d.replayed,
       c.sku, c.name, d.quantity, c.unit_amount_cents, c.currency,
       c.unit_amount_cents * d.quantity,
       left(md5(d.salt || ':cart:' || d.i), 16),
       md5(d.salt || ':fp:' || d.i) || md5(d.salt || ':fp2:' || d.i),
       s.sequence_id, s.step_id,
       d.created_at,
       d.created_at + interval '1 hour',
       d.created_at + d.time_to_pay,
       d.created_at + case d.outcome
           when 'paid' then d.time_to_pay
           when 'expired' then interval '1 hour'
           when 'cleaned' then interval '2 seconds'
           else interval '80 milliseconds' end,
       'cs_test_a1' || md5(d.salt || ':session:' || d.i) || left(md5(d.salt || ':s2:' || d.i), 24),
       'evt_' || left(md5(d.salt || ':event:' || d.i), 24),
       'req_' || left(md5(d.salt || ':request:' || d.i), 14)
from drawn d
join catalog c on c.k = d.k
cross join start_step s
""".replace("{days}", str(DAYS))

_RECIPIENTS = """
insert into h2s_recipients (recipient_id, email_normalized, email, name, phone, created_at,
                            updated_at)
select recipient_id, email, email, min(customer_name), min(phone), min(created_at),
       min(created_at)
from h2s_bench_prefill_plan
group by recipient_id, email
"""

# Each of the statements below writes the checkouts $1 to $2 of the plan ($3: now).
_CHECKOUTS = """
insert into h2s_checkouts (
    checkout_id, state, idempotency_key, key_source, derived_key, request_fingerprint,
    request_body, stripe_idempotency_key, order_id, job_id, session_id, response_status,
    response_body, created_at, updated_at, session_request)
select
    p.checkout_id,
    p.outcome,
    -- the reaper forgets client keys of finished checkouts after 72 hours
    case when p.client_key and p.created_at > $3::timestamptz - interval '72 hours'
         then 'prefill-key-' || p.checkout_id end,
    case when p.client_key then 'client' else 'derived' end,
    md5(p.email || p.cart_fingerprint) || md5(p.cart_fingerprint || p.email),
    p.fingerprint,
    jsonb_build_object(
        'items', jsonb_build_array(jsonb_build_object('sku', p.sku, 'quantity', p.quantity)),
        'customer', jsonb_build_object(
            'name', p.customer_name, 'email', p.email, 'phone', p.phone,
            'address', jsonb_build_object(
                'city', 'Austin', 'line1', '1 Main St', 'line2', null, 'state', 'TX',
                'country', 'US', 'postal_code', '78701'))),
    'h2s-checkout-' || p.checkout_id || '-session',
    p.order_id,
    p.job_id,
    case when p.outcome <> 'cleaned' then p.session_id end,
    case when p.outcome = 'cleaned' then 502 else 201 end,
    case when p.outcome = 'cleaned' then jsonb_build_object(
             'ok', false, 'checkout_trace_id', p.checkout_id,
             'error', jsonb_build_object(
                 'code', 'payment_provider_error',
                 'message', 'the payment provider failed; the order and the job were cancelled'))
         else jsonb_build_object(
             'ok', true, 'checkout_trace_id', p.checkout_id, 'order_id', p.order_id,
             'job_id', p.job_id,
             'pay', jsonb_build_object(
                 'session_id', p.session_id,
                 'session_url', 'https://checkout.stripe.com/c/pay/' || p.session_id)) end,
    p.created_at,
    p.settled_at,
    jsonb_build_object(
        'lines', jsonb_build_array(jsonb_build_object(
            'name', p.sku_name, 'currency', p.currency, 'quantity', p.quantity,
            'unit_amount_cents', p.unit_amount_cents)),
        'metadata', jsonb_build_object(
            'job_id', p.job_id, 'order_id', p.order_id, 'checkout_trace_id', p.checkout_id),
        'cancel_url', 'https://shop.example.com/checkout/cancel?order_id=' || p.order_id,
        'success_url', 'https://shop.example.com/checkout/success?order_id=' || p.order_id,
        'expires_at', p.expires_at,
        'customer_email', p.email,
        'idempotency_key', 'h2s-checkout-' || p.checkout_id || '-session',
        'client_reference_id', p.order_id)
from h2s_bench_prefill_plan p
where p.i between $1 and $2
"""

_ORDERS = """
insert into h2s_orders (
    order_id, checkout_id, recipient_id, status, customer, items, subtotal_cents,
    total_cents, currency, session_id, metadata_json, created_at, updated_at, paid_at)
select
    p.order_id, p.checkout_id, p.recipient_id,
    case p.outcome when 'paid' then 'paid' when 'expired' then 'expired'
                   when 'cleaned' then 'cancelled' else 'pending_payment' end,
    jsonb_build_object(
        'name', p.customer_name, 'email', p.email, 'phone', p.phone,
        'address', jsonb_build_object(
            'city', 'Austin', 'line1', '1 Main St', 'line2', null, 'state', 'TX',
            'country', 'US', 'postal_code', '78701')),
    jsonb_build_array(jsonb_build_object(
        'sku', p.sku, 'name', p.sku_name, 'quantity', p.quantity,
        'amount_cents', p.total_cents, 'unit_amount_cents', p.unit_amount_cents)),
    p.total_cents, p.total_cents, p.currency,
    case when p.outcome <> 'cleaned' then p.session_id end,
    case when p.outcome <> 'cleaned'
         then jsonb_build_object('dispatch_job_id', p.job_id, 'checkout_trace_id', p.checkout_id)
         else '{}'::jsonb end,
    p.created_at, p.settled_at,
    case when p.outcome = 'paid' then p.paid_at end
from h2s_bench_prefill_plan p
where p.i between $1 and $2
"""

_JOBS = """
insert into h2s_dispatch_jobs (
    job_id, order_id, recipient_id, sequence_id, step_id, status, due_at, metadata,
    created_at, updated_at)
select
    p.job_id, p.order_id, p.recipient_id, p.sequence_id, p.step_id,
    case p.outcome when 'paid' then 'dispatchable' when 'session_created' then 'queued'
                   else 'cancelled' end,
    p.created_at + interval '24 hours',
    jsonb_build_object('order_id', p.order_id, 'checkout_trace_id', p.checkout_id),
    p.created_at, p.settled_at
from h2s_bench_prefill_plan p
where p.i between $1 and $2
"""

# The rows a checkout's timeline shows: phase 1's two steps and its transition, then the
# session (or the failed call, the failure and the cleanup), then the webhook's outcome.
_TRACES = """
insert into h2s_checkout_traces (checkout_id, kind, event, from_state, to_state, at,
                                 duration_ms, detail)
select p.checkout_id, t.kind, t.event, t.from_state, t.to_state, t.at, t.duration_ms, t.detail
from h2s_bench_prefill_plan p
cross join lateral (values
    (true, 'step', 'checkout.received', null, null,
     p.created_at + interval '2 milliseconds', null::float8,
     jsonb_build_object('lines', 1, 'key_source',
                        case when p.client_key then 'client' else 'derived' end,
                        'total_cents', p.total_cents, 'cart_fingerprint', p.cart_fingerprint)),
    (true, 'step', 'order_and_job.created', null, null,
     p.created_at + interval '4 milliseconds', null,
     jsonb_build_object('due_at', p.created_at + interval '24 hours', 'job_id', p.job_id,
                        'step_id', p.step_id, 'order_id', p.order_id,
                        'sequence_id', p.sequence_id, 'recipient_id', p.recipient_id)),
    (true, 'transition', 'queue_job', 'pending_payment', 'job_queued',
     p.created_at + interval '4 milliseconds',
     null, jsonb_build_object('job_id', p.job_id, 'order_id', p.order_id)),
    (p.outcome <> 'cleaned', 'step', 'stripe.session_created', null, null,
     p.created_at + interval '60 milliseconds', 50.0,
     jsonb_build_object('expires_at', extract(epoch from p.expires_at)::bigint,
                        'session_id', p.session_id, 'provider_request_id', p.request_id)),
    (p.outcome <> 'cleaned', 'transition', 'create_session', 'job_queued', 'session_created',
     p.created_at + interval '61 milliseconds', null,
     jsonb_build_object('session_id', p.session_id)),
    (p.outcome in ('paid', 'expired'), 'transition',
     case when p.outcome = 'paid' then 'pay' else 'expire' end,
     'session_created', p.outcome, p.settled_at, null,
     jsonb_build_object('source', 'webhook:' || p.event_id, 'session_id', p.session_id,
                        'payment_status',
                        case when p.outcome = 'paid' then 'paid' else 'unpaid' end)),
    (p.outcome = 'cleaned', 'step', 'create_session.failed', null, null,
     p.created_at + interval '1 second', 780.0,
     jsonb_build_object('error_code', 'payment_provider_error', 'error_class', 'APIError',
                        'http_status', 500, 'provider_code', 'api_error',
                        'provider_request_id', p.request_id)),
    (p.outcome = 'cleaned', 'transition', 'fail', 'job_queued', 'failed',
     p.settled_at - interval '3 milliseconds', null,
     jsonb_build_object('code', 'payment_provider_error', 'phase', 'create_session')),
    (p.outcome = 'cleaned', 'transition', 'clean', 'failed', 'cleaned', p.settled_at, null,
     jsonb_build_object('order_and_job_cancelled', true)),
    (p.replayed, 'step', 'checkout.replayed', null, null,
     p.created_at + interval '20 seconds', null,
     jsonb_build_object('key_source', case when p.client_key then 'client' else 'derived' end))
) as t(applies, kind, event, from_state, to_state, at, duration_ms, detail)
where p.i between $1 and $2 and t.applies
"""

_WEBHOOK_EVENTS = """
insert into h2s_webhook_events (event_id, type, session_id, checkout_id, result, received_at,
                                payload)
select
    p.event_id,
    'checkout.session.' || case when p.outcome = 'paid' then 'completed' else 'expired' end,
    p.session_id, p.checkout_id, p.outcome, p.settled_at,
    jsonb_build_object(
        'id', p.event_id, 'object', 'event', 'livemode', false, 'pending_webhooks', 1,
        'created', extract(epoch from p.settled_at)::bigint,
        'type', 'checkout.session.'
                || case when p.outcome = 'paid' then 'completed' else 'expired' end,
        'data', jsonb_build_object('object', jsonb_build_object(
            'id', p.session_id, 'object', 'checkout.session', 'mode', 'payment',
            'status', case when p.outcome = 'paid' then 'complete' else 'expired' end,
            'payment_status', case when p.outcome = 'paid' then 'paid' else 'unpaid' end,
            'amount_total', p.total_cents, 'amount_subtotal', p.total_cents,
            'currency', p.currency, 'customer_email', p.email,
            'client_reference_id', p.order_id,
            'created', extract(epoch from p.created_at)::bigint,
            'expires_at', extract(epoch from p.expires_at)::bigint,
            'metadata', jsonb_build_object('job_id', p.job_id, 'order_id', p.order_id,
                                           'checkout_trace_id', p.checkout_id))))
from h2s_bench_prefill_plan p
where p.i between $1 and $2 and p.outcome in ('paid', 'expired')
"""

_FAILURES = """
insert into h2s_checkout_failures (checkout_id, phase, error_code, error_class, message,
                                   provider_request_id, provider_code, http_status, at)
select p.checkout_id, 'create_session', 'payment_provider_error', 'APIError',
       'create_session: Sorry, something went wrong.', p.request_id, 'api_error', 500,
       p.created_at + interval '1 second'
from h2s_bench_prefill_plan p
where p.i between $1 and $2 and p.outcome = 'cleaned'
"""

# Statements in the order the foreign keys need (those on h2s_checkouts are deferred).
# Recipients are shared by many checkouts: written first, for all of them at once.
_PER_CHECKOUT = (
    ("h2s_checkouts", _CHECKOUTS),
    ("h2s_orders", _ORDERS),
    ("h2s_dispatch_jobs", _JOBS),
    ("h2s_checkout_traces", _TRACES),
    ("h2s_webhook_events", _WEBHOOK_EVENTS),
    ("h2s_checkout_failures", _FAILURES),
)
TABLES = ("h2s_recipients", *(table for table, _ in _PER_CHECKOUT))
_NOW_ARG = {"h2s_checkouts"}  # the statements that take $3 = now

_OUTCOMES = "select outcome, count(*) from h2s_bench_prefill_plan group by outcome"


class PrefillError(RuntimeError):
    """A statement of bench/prefill.py does not fit the schema, or the data it needs."""


@dataclass
class Prefilled:
    checkouts: int
    open_sessions: int
    writers: int = 1
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows written
    outcomes: dict[str, int] = field(default_factory=dict)
    insert_s: float = 0.0
    vacuum_s: float = 0.0
    foreign_keys_checked: bool = True
    database_bytes_before: int = 0
    database_bytes_after: int = 0

    @property
    def seconds(self) -> float:
        return self.insert_s + self.vacuum_s


def open_sessions_for(checkouts: int) -> int:
    """About 50 minutes' worth of checkouts at the prefill's own pace (at least one)."""
    return max(1, round(checkouts / (DAYS * 24 * 60) * 50))


def ranges(total: int, parts: int) -> list[tuple[int, int]]:
    """1..total cut into ``parts`` contiguous ranges (fewer when total is small)."""
    parts = max(1, min(parts, total))
    bounds = [round(total * k / parts) for k in range(parts + 1)]
    return [(bounds[k] + 1, bounds[k + 1]) for k in range(parts) if bounds[k + 1] > bounds[k]]


async def prefill(
    dsn: str,
    checkouts: int,
    salt: str,
    *,
    check_foreign_keys: bool = False,
    writers: int = 2,
) -> Prefilled:
    """Write ``checkouts`` finished checkouts (and a few open ones), then VACUUM ANALYZE.

    The plan's rows are cut into ``writers`` ranges, each written by a connection and a
    transaction of its own (the machine's cores, not one). Without
    ``check_foreign_keys`` and on a superuser connection, they run with
    ``session_replication_role = replica`` (no foreign-key triggers): the rows are
    consistent by construction, which the tests check with the triggers on.
    """
    if checkouts < 1:
        raise ValueError("prefill needs at least one checkout")
    open_sessions = open_sessions_for(checkouts)
    result = Prefilled(checkouts, open_sessions)
    conn = await asyncpg.connect(dsn)
    try:
        result.database_bytes_before = await conn.fetchval(
            "select pg_database_size(current_database())"
        )
        superuser = await conn.fetchval("select current_setting('is_superuser') = 'on'")
        result.foreign_keys_checked = check_foreign_keys or not superuser
        started = time.perf_counter()
        now = await conn.fetchval("select now()")
        await conn.execute(_DROP_PLAN)
        await _run(conn, "the plan", _CREATE_PLAN)
        try:
            planned = await _run(
                conn,
                "the plan",
                _FILL_PLAN,
                checkouts,
                open_sessions,
                max(1, checkouts // CHECKOUTS_PER_CUSTOMER),
                salt,
                now,
                PAID_SHARE,
                EXPIRED_SHARE,
                CLIENT_KEY_SHARE,
                REPLAYED_SHARE,
            )
            total = checkouts + open_sessions
            if int(planned.split()[-1]) != total:
                raise PrefillError(
                    "the plan is short: no active catalog item, or no default dispatch "
                    "sequence with a start step"
                )
            result.outcomes = {r[0]: int(r[1]) for r in await conn.fetch(_OUTCOMES)}
            async with conn.transaction():
                if not result.foreign_keys_checked:
                    await conn.execute("set local session_replication_role = replica")
                status = await _run(conn, "h2s_recipients", _RECIPIENTS)
                result.rows["h2s_recipients"] = int(status.split()[-1])
            parts = ranges(total, writers)
            result.writers = len(parts)
            written = await asyncio.gather(
                *(_write(dsn, lo, hi, now, not result.foreign_keys_checked) for lo, hi in parts)
            )
            for rows in written:
                for table, n in rows.items():
                    result.rows[table] = result.rows.get(table, 0) + n
        finally:
            await conn.execute(_DROP_PLAN)
        result.insert_s = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(
            *(_vacuum(dsn, TABLES[k :: result.writers]) for k in range(result.writers))
        )
        await conn.execute("checkpoint")
        result.vacuum_s = time.perf_counter() - started
        result.database_bytes_after = await conn.fetchval(
            "select pg_database_size(current_database())"
        )
    finally:
        await conn.close()
    return result


async def _write(
    dsn: str, lo: int, hi: int, now: datetime, without_triggers: bool
) -> dict[str, int]:
    """The plan's checkouts ``lo``..``hi``, every table, in one transaction."""
    conn = await asyncpg.connect(dsn)
    rows: dict[str, int] = {}
    try:
        async with conn.transaction():
            if without_triggers:
                await conn.execute("set local session_replication_role = replica")
            for table, sql in _PER_CHECKOUT:
                args: tuple[object, ...] = (lo, hi, now) if table in _NOW_ARG else (lo, hi)
                status = await _run(conn, table, sql, *args)
                rows[table] = int(status.split()[-1])
    finally:
        await conn.close()
    return rows


async def _vacuum(dsn: str, tables: tuple[str, ...]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for table in tables:
            await conn.execute(f"vacuum analyze {table}")
    finally:
        await conn.close()


async def _run(conn: asyncpg.Connection, what: str, sql: str, *args: object) -> str:
    try:
        return str(await conn.execute(sql, *args))
    except asyncpg.PostgresError as exc:
        first_line = (str(exc).splitlines() or [""])[0].rstrip(".")
        raise PrefillError(
            f"prefill of {what} failed ({type(exc).__name__}: {first_line}); if the schema "
            "changed, adapt its statement in src/h2s_bench/prefill.py"
        ) from exc
