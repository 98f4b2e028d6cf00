-- migrate:up

-- After the session: the customer pays (paid) or the session ends unpaid (expired).
alter table h2s_checkouts drop constraint h2s_checkouts_state_check;
alter table h2s_checkouts add constraint h2s_checkouts_state_check check (state in (
    'pending_payment', 'job_queued', 'session_created', 'paid', 'expired', 'failed', 'cleaned'));

alter table h2s_orders drop constraint h2s_orders_status_check;
alter table h2s_orders add constraint h2s_orders_status_check check (status in (
    'pending_payment', 'paid', 'expired', 'cancelled'));
alter table h2s_orders add column paid_at timestamptz;

-- A paid job is dispatchable: the portal shows it to technicians' schedulers.
alter table h2s_dispatch_jobs drop constraint h2s_dispatch_jobs_status_check;
alter table h2s_dispatch_jobs add constraint h2s_dispatch_jobs_status_check check (status in (
    'queued', 'dispatchable', 'cancelled'));

-- Each Stripe event id is applied once; a redelivery finds its row and changes nothing.
create table h2s_webhook_events (
    event_id text primary key,
    type text not null,
    session_id text,
    checkout_id uuid references h2s_checkouts (checkout_id),
    result text not null,
    received_at timestamptz not null default now(),
    payload jsonb not null
);
create index h2s_webhook_events_checkout on h2s_webhook_events (checkout_id);
create index h2s_webhook_events_received on h2s_webhook_events (received_at desc);

-- The reconciler and doctor look for sessions that should have ended by now.
create index h2s_checkouts_open_sessions on h2s_checkouts (updated_at)
    where state = 'session_created';

-- migrate:down
drop index h2s_checkouts_open_sessions;
drop table h2s_webhook_events;
alter table h2s_dispatch_jobs drop constraint h2s_dispatch_jobs_status_check;
alter table h2s_dispatch_jobs add constraint h2s_dispatch_jobs_status_check check (status in (
    'queued', 'cancelled'));
alter table h2s_orders drop column paid_at;
alter table h2s_orders drop constraint h2s_orders_status_check;
alter table h2s_orders add constraint h2s_orders_status_check check (status in (
    'pending_payment', 'cancelled'));
alter table h2s_checkouts drop constraint h2s_checkouts_state_check;
alter table h2s_checkouts add constraint h2s_checkouts_state_check check (state in (
    'pending_payment', 'job_queued', 'session_created', 'failed', 'cleaned'));
