-- migrate:up

-- A claim is a lease: the process running a checkout holds it until locked_until, so a
-- retry can tell "still running" (409) from "died mid-way" (take over and resume).
alter table h2s_checkouts
    add column locked_until timestamptz,
    add column attempts integer not null default 1,
    -- The exact Stripe request, kept so that a resumed attempt sends the same parameters
    -- under the same idempotency key (Stripe refuses a key reused with other parameters).
    add column session_request jsonb;

-- A cleaned checkout no longer holds its client key, so a retry after a failure with the
-- same key starts a fresh checkout instead of replaying the failure for 24 hours.
drop index h2s_checkouts_client_key;
create unique index h2s_checkouts_client_key
    on h2s_checkouts (idempotency_key)
    where key_source = 'client' and idempotency_key is not null and state <> 'cleaned';

create index h2s_checkouts_client_key_created on h2s_checkouts (created_at)
    where key_source = 'client' and idempotency_key is not null;

-- migrate:down
drop index h2s_checkouts_client_key_created;
drop index h2s_checkouts_client_key;
create unique index h2s_checkouts_client_key
    on h2s_checkouts (idempotency_key) where key_source = 'client';
alter table h2s_checkouts
    drop column session_request,
    drop column attempts,
    drop column locked_until;
