-- migrate:up

-- Services a storefront can sell. Prices live here, never in the request.
create table h2s_service_catalog (
    sku text primary key check (sku ~ '^[a-z0-9][a-z0-9-]{1,63}$'),
    name text not null,
    description text not null default '',
    unit_amount_cents integer not null check (unit_amount_cents > 0),
    currency text not null default 'usd' check (currency ~ '^[a-z]{3}$'),
    max_quantity integer not null default 10 check (max_quantity between 1 and 100),
    active boolean not null default true,
    created_at timestamptz not null default now()
);

-- The technician work flow a dispatch job walks through.
create table h2s_dispatch_sequences (
    sequence_id text primary key,
    name text not null,
    is_default boolean not null default false
);
create unique index h2s_dispatch_sequences_one_default
    on h2s_dispatch_sequences (is_default) where is_default;

create table h2s_dispatch_steps (
    step_id text primary key,
    sequence_id text not null references h2s_dispatch_sequences (sequence_id),
    position integer not null,
    name text not null,
    is_start boolean not null default false,
    unique (sequence_id, position)
);
create unique index h2s_dispatch_steps_one_start
    on h2s_dispatch_steps (sequence_id) where is_start;

-- One recipient per normalised email (lower-cased, trimmed).
create table h2s_recipients (
    recipient_id uuid primary key default gen_random_uuid(),
    email_normalized text not null unique,
    email text not null,
    name text not null,
    phone text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- One row per checkout: the persisted state machine, its keys and its stored answer.
create table h2s_checkouts (
    checkout_id uuid primary key,
    state text not null check (state in (
        'pending_payment', 'job_queued', 'session_created', 'failed', 'cleaned')),
    idempotency_key text,
    key_source text not null check (key_source in ('client', 'derived')),
    derived_key text not null,
    request_fingerprint text not null,
    request_body jsonb not null,
    stripe_idempotency_key text not null unique,
    order_id text,
    job_id uuid,
    session_id text,
    response_status integer,
    response_body jsonb,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create unique index h2s_checkouts_client_key
    on h2s_checkouts (idempotency_key) where key_source = 'client';
create index h2s_checkouts_derived_key on h2s_checkouts (derived_key, created_at desc);
create index h2s_checkouts_state on h2s_checkouts (state, updated_at)
    where state not in ('session_created', 'cleaned');

create table h2s_orders (
    order_id text primary key,
    checkout_id uuid not null unique references h2s_checkouts (checkout_id),
    recipient_id uuid not null references h2s_recipients (recipient_id),
    status text not null check (status in ('pending_payment', 'cancelled')),
    customer jsonb not null,
    items jsonb not null,
    subtotal_cents integer not null check (subtotal_cents >= 0),
    total_cents integer not null check (total_cents >= 0),
    currency text not null,
    session_id text unique,
    metadata_json jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index h2s_orders_created_at on h2s_orders (created_at desc);
create index h2s_orders_recipient on h2s_orders (recipient_id, created_at desc);

create table h2s_dispatch_jobs (
    job_id uuid primary key,
    order_id text not null unique references h2s_orders (order_id),
    recipient_id uuid not null references h2s_recipients (recipient_id),
    sequence_id text not null references h2s_dispatch_sequences (sequence_id),
    step_id text not null references h2s_dispatch_steps (step_id),
    status text not null check (status in ('queued', 'cancelled')),
    due_at timestamptz not null,
    metadata jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index h2s_dispatch_jobs_recipient on h2s_dispatch_jobs (recipient_id, created_at desc);
create index h2s_dispatch_jobs_status on h2s_dispatch_jobs (status, created_at desc);

alter table h2s_checkouts
    add foreign key (order_id) references h2s_orders (order_id) deferrable initially deferred,
    add foreign key (job_id) references h2s_dispatch_jobs (job_id) deferrable initially deferred;

-- One row per transition and per step; the timeline reads these in seq order.
create table h2s_checkout_traces (
    seq bigint generated always as identity primary key,
    checkout_id uuid not null references h2s_checkouts (checkout_id),
    kind text not null check (kind in ('transition', 'step')),
    event text not null,
    from_state text,
    to_state text,
    at timestamptz not null default clock_timestamp(),
    duration_ms double precision,
    detail jsonb not null default '{}'::jsonb
);
create index h2s_checkout_traces_checkout on h2s_checkout_traces (checkout_id, seq);

create table h2s_checkout_failures (
    failure_id bigint generated always as identity primary key,
    checkout_id uuid not null references h2s_checkouts (checkout_id),
    phase text not null,
    error_code text not null,
    error_class text not null,
    message text not null,
    provider_request_id text,
    provider_code text,
    http_status integer,
    at timestamptz not null default clock_timestamp()
);
create index h2s_checkout_failures_checkout on h2s_checkout_failures (checkout_id);
create index h2s_checkout_failures_at on h2s_checkout_failures (at desc);

insert into h2s_dispatch_sequences (sequence_id, name, is_default) values
    ('bundle-default', 'Default bundle flow', true);
insert into h2s_dispatch_steps (step_id, sequence_id, position, name, is_start) values
    ('bundle-default.schedule', 'bundle-default', 1, 'Schedule the visit', true),
    ('bundle-default.assign', 'bundle-default', 2, 'Assign a technician', false),
    ('bundle-default.visit', 'bundle-default', 3, 'Technician visit', false),
    ('bundle-default.complete', 'bundle-default', 4, 'Work completed', false);

insert into h2s_service_catalog (sku, name, description, unit_amount_cents, max_quantity) values
    ('tv-mount', 'TV wall mounting', 'Mount one TV up to 75 inches, cables hidden in a raceway.', 14900, 10),
    ('smart-lock', 'Smart lock installation', 'Install and pair one smart deadbolt.', 12900, 10),
    ('ceiling-fan', 'Ceiling fan installation', 'Replace a fixture with a ceiling fan on an existing box.', 17900, 10),
    ('camera-4', 'Security cameras (4)', 'Mount and configure four outdoor cameras.', 39900, 5),
    ('wifi-mesh', 'Wi-Fi mesh setup', 'Place and configure a mesh network of up to three nodes.', 9900, 5);

-- migrate:down
drop table h2s_checkout_failures;
drop table h2s_checkout_traces;
alter table h2s_checkouts drop constraint if exists h2s_checkouts_order_id_fkey;
alter table h2s_checkouts drop constraint if exists h2s_checkouts_job_id_fkey;
drop table h2s_dispatch_jobs;
drop table h2s_orders;
drop table h2s_checkouts;
drop table h2s_recipients;
drop table h2s_dispatch_steps;
drop table h2s_dispatch_sequences;
drop table h2s_service_catalog;
