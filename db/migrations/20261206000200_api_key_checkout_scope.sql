-- migrate:up
-- A fourth scope, `checkout`: a storefront's server presents it on POST /api/checkout and
-- is limited per key and per email instead of per client address (every customer of such
-- a storefront arrives from its one address).
alter table h2s_api_keys drop constraint h2s_api_keys_scopes_check;
alter table h2s_api_keys add constraint h2s_api_keys_scopes_check
    check (cardinality(scopes) > 0 and scopes <@ array['read', 'operate', 'admin', 'checkout']);

-- migrate:down
alter table h2s_api_keys drop constraint h2s_api_keys_scopes_check;
alter table h2s_api_keys add constraint h2s_api_keys_scopes_check
    check (cardinality(scopes) > 0 and scopes <@ array['read', 'operate', 'admin']);
