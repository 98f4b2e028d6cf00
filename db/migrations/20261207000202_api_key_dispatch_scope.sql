-- migrate:up
-- A `dispatch` scope for the dispatch system: it completes jobs (POST
-- /api/jobs/{job_id}/complete), which captures the held payment.
alter table h2s_api_keys drop constraint h2s_api_keys_scopes_check;
alter table h2s_api_keys add constraint h2s_api_keys_scopes_check
    check (cardinality(scopes) > 0
           and scopes <@ array['read', 'operate', 'admin', 'checkout', 'catalog',
                                    'dispatch']);

-- migrate:down
alter table h2s_api_keys drop constraint h2s_api_keys_scopes_check;
alter table h2s_api_keys add constraint h2s_api_keys_scopes_check
    check (cardinality(scopes) > 0
           and scopes <@ array['read', 'operate', 'admin', 'checkout', 'catalog']);
