-- migrate:up
-- Pay when the job is done (issue 26). Under H2S_CAPTURE=on_completion the session holds
-- the amount on the card (manual capture); completing the job captures the final amount
-- once; cancelling releases the hold; a hold that lapses ends authorization_expired.
-- Partial refunds, for either policy, leave an order partially_refunded until all of it
-- is back.
alter table h2s_checkouts drop constraint h2s_checkouts_state_check;
alter table h2s_checkouts add constraint h2s_checkouts_state_check check (state in (
    'pending_payment', 'job_queued', 'session_created', 'paid', 'expired', 'payment_failed',
    'cancelled', 'refund_pending', 'refunded', 'refund_failed', 'failed', 'cleaned',
    'authorized', 'capture_pending', 'authorization_expired', 'partially_refunded'));

-- The policy in force when the checkout began, stored with it: phase 1 already writes the
-- Stripe request it will send (session_request, with capture_method 'manual' under
-- on_completion), so the column is derived from it and no function on the checkout's
-- path changes. Changing H2S_CAPTURE later never changes how an existing order is paid.
alter table h2s_checkouts add column capture_policy text generated always as (
    case when session_request ->> 'capture_method' = 'manual' then 'on_completion'
         else 'at_booking' end) stored;

alter table h2s_orders drop constraint h2s_orders_status_check;
alter table h2s_orders add constraint h2s_orders_status_check check (status in (
    'pending_payment', 'paid', 'expired', 'cancelled', 'refund_pending', 'refunded',
    'refund_failed', 'authorized', 'authorization_expired', 'partially_refunded'));
-- What the card holds (amount_capturable) and until when Stripe lets it be captured.
alter table h2s_orders add column amount_authorized_cents integer
    check (amount_authorized_cents >= 0);
alter table h2s_orders add column authorized_at timestamptz;
alter table h2s_orders add column authorization_expires_at timestamptz;
-- Stripe's payment_intent.* events name the intent; its metadata names our checkout, and
-- failing that the order that holds or paid it is found by it.
create index h2s_orders_payment_intent on h2s_orders (payment_intent)
    where payment_intent is not null;
-- Holds that lapse soonest, for doctor's 24 h list.
create index h2s_orders_authorized_by_expiry on h2s_orders (authorization_expires_at)
    where status = 'authorized';

alter table h2s_dispatch_jobs drop constraint h2s_dispatch_jobs_status_check;
alter table h2s_dispatch_jobs add constraint h2s_dispatch_jobs_status_check
    check (status in ('queued', 'dispatchable', 'cancelled', 'completed'));
alter table h2s_dispatch_jobs add column completed_at timestamptz;
-- Why staff must look at a job before a technician goes: its card hold lapsed.
alter table h2s_dispatch_jobs add column payment_flag text
    check (payment_flag in ('authorization_expired'));

-- One capture per order, exactly once: its Stripe idempotency key comes from its own row.
create table h2s_captures (
    capture_id uuid primary key,
    checkout_id uuid not null references h2s_checkouts (checkout_id),
    order_id text not null unique references h2s_orders (order_id),
    job_id uuid not null references h2s_dispatch_jobs (job_id),
    amount_cents integer not null check (amount_cents > 0),
    currency text not null,
    payment_intent text not null,
    idempotency_key text not null unique,
    note text,
    actor text not null,
    -- requested: owed, not confirmed sent; succeeded: Stripe captured it; failed: Stripe
    -- refused it for good (the hold had lapsed or was released).
    status text not null default 'requested'
        check (status in ('requested', 'succeeded', 'failed')),
    amount_captured_cents integer,
    failure_code text,
    locked_until timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index h2s_captures_open on h2s_captures (updated_at) where status = 'requested';

-- Partial refunds share the refunds table, its key (h2s-refund-<order>-<attempt>) and
-- its settling (flows/refunds.py apply_answer).
alter table h2s_refunds drop constraint h2s_refunds_cause_check;
alter table h2s_refunds add constraint h2s_refunds_cause_check
    check (cause in ('cancel', 'late_payment', 'partial'));

-- migrate:down
alter table h2s_refunds drop constraint h2s_refunds_cause_check;
alter table h2s_refunds add constraint h2s_refunds_cause_check
    check (cause in ('cancel', 'late_payment'));
drop table h2s_captures;
alter table h2s_dispatch_jobs drop column payment_flag;
alter table h2s_dispatch_jobs drop column completed_at;
alter table h2s_dispatch_jobs drop constraint h2s_dispatch_jobs_status_check;
alter table h2s_dispatch_jobs add constraint h2s_dispatch_jobs_status_check
    check (status in ('queued', 'dispatchable', 'cancelled'));
drop index h2s_orders_authorized_by_expiry;
drop index h2s_orders_payment_intent;
alter table h2s_orders drop column authorization_expires_at;
alter table h2s_orders drop column authorized_at;
alter table h2s_orders drop column amount_authorized_cents;
alter table h2s_orders drop constraint h2s_orders_status_check;
alter table h2s_orders add constraint h2s_orders_status_check check (status in (
    'pending_payment', 'paid', 'expired', 'cancelled', 'refund_pending', 'refunded',
    'refund_failed'));
alter table h2s_checkouts drop column capture_policy;
alter table h2s_checkouts drop constraint h2s_checkouts_state_check;
alter table h2s_checkouts add constraint h2s_checkouts_state_check check (state in (
    'pending_payment', 'job_queued', 'session_created', 'paid', 'expired', 'payment_failed',
    'cancelled', 'refund_pending', 'refunded', 'refund_failed', 'failed', 'cleaned'));
