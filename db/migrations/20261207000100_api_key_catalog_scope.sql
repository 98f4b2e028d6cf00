-- migrate:up
-- A fifth scope, `catalog`: shop staff who manage the services for sale, their prices and
-- the service area, without the key that moves money (operate) or makes keys (admin).
alter table h2s_api_keys drop constraint h2s_api_keys_scopes_check;
alter table h2s_api_keys add constraint h2s_api_keys_scopes_check
    check (cardinality(scopes) > 0
           and scopes <@ array['read', 'operate', 'admin', 'checkout', 'catalog']);

-- migrate:down
alter table h2s_api_keys drop constraint h2s_api_keys_scopes_check;
alter table h2s_api_keys add constraint h2s_api_keys_scopes_check
    check (cardinality(scopes) > 0 and scopes <@ array['read', 'operate', 'admin', 'checkout']);
