-- migrate:up

-- After payment: an order can be cancelled, and a paid one refunded exactly once.
-- The states the checkout machine (domain/machine.py) now has.
alter table h2s_checkouts drop constraint h2s_checkouts_state_check;
alter table h2s_checkouts add constraint h2s_checkouts_state_check check (state in (
    'pending_payment', 'job_queued', 'session_created', 'paid', 'expired', 'payment_failed',
    'cancelled', 'refund_pending', 'refunded', 'refund_failed', 'failed', 'cleaned'));

-- What a paid order was paid with: a refund is made on the payment intent, for the amount
-- the provider took.
alter table h2s_orders drop constraint h2s_orders_status_check;
alter table h2s_orders add constraint h2s_orders_status_check check (status in (
    'pending_payment', 'paid', 'expired', 'cancelled', 'refund_pending', 'refunded',
    'refund_failed'));
alter table h2s_orders
    add column payment_intent text,
    add column amount_paid_cents integer check (amount_paid_cents >= 0);

-- One row per refund sent (or owed) to the provider. A refund owed is written with the
-- state change that owes it ('requested'), before the provider is asked, so a crash between
-- the two leaves a row the reconciler finishes with the same idempotency key: exactly one
-- refund at the provider whatever happens to this process.
--   cause: 'cancel' (an operator cancelled a paid order) or 'late_payment' (money arrived
--   for a checkout that had already ended: cleaned, expired, cancelled, payment_failed).
create table h2s_refunds (
    refund_id uuid primary key,
    checkout_id uuid not null references h2s_checkouts (checkout_id),
    order_id text not null references h2s_orders (order_id),
    attempt integer not null check (attempt >= 1),
    cause text not null check (cause in ('cancel', 'late_payment')),
    reason text not null
        check (reason in ('requested_by_customer', 'duplicate', 'fraudulent', 'other',
                          'late_payment')),
    note text,
    actor text not null,
    amount_cents integer not null check (amount_cents > 0),
    currency text not null,
    payment_intent text not null,
    idempotency_key text not null unique,
    stripe_refund_id text unique,
    status text not null default 'requested'
        check (status in ('requested', 'pending', 'requires_action', 'succeeded', 'failed',
                          'canceled')),
    failure_reason text,
    locked_until timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (order_id, attempt)
);
create index h2s_refunds_checkout on h2s_refunds (checkout_id);
create index h2s_refunds_payment_intent on h2s_refunds (payment_intent);
-- The reconciler's work: refunds not yet settled by the provider.
create index h2s_refunds_open on h2s_refunds (updated_at)
    where status in ('requested', 'pending', 'requires_action');

-- A client Idempotency-Key on an operator's request (a cancel): the same key with the same
-- request answers the order's current state again; with another request, 422.
create table h2s_request_keys (
    scope text not null,
    idempotency_key text not null,
    request_fingerprint text not null,
    order_id text not null references h2s_orders (order_id),
    created_at timestamptz not null default now(),
    primary key (scope, idempotency_key)
);
create index h2s_request_keys_created on h2s_request_keys (created_at);

-- migrate:down
drop table h2s_request_keys;
drop table h2s_refunds;
alter table h2s_orders drop column amount_paid_cents, drop column payment_intent;
alter table h2s_orders drop constraint h2s_orders_status_check;
alter table h2s_orders add constraint h2s_orders_status_check check (status in (
    'pending_payment', 'paid', 'expired', 'cancelled'));
alter table h2s_checkouts drop constraint h2s_checkouts_state_check;
alter table h2s_checkouts add constraint h2s_checkouts_state_check check (state in (
    'pending_payment', 'job_queued', 'session_created', 'paid', 'expired', 'failed', 'cleaned'));
