-- migrate:up

-- Set when cleanup could not make sure the provider has no payable session (the expire
-- failed, or the provider could not be asked); the reconciler retries until it can.
alter table h2s_checkouts add column needs_settlement boolean not null default false;
create index h2s_checkouts_needs_settlement on h2s_checkouts (updated_at)
    where needs_settlement;

-- migrate:down
drop index h2s_checkouts_needs_settlement;
alter table h2s_checkouts drop column needs_settlement;
