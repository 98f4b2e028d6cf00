-- migrate:up

-- Phase 1 (20261202000001 had the function whole; one branch is added here, and p_new is
-- parsed before the limits instead of after them). The price a checkout charges is the
-- price current when its phase 1 commits (issue 25): p_new carries catalog_versions
-- ({sku: version} of the items the worker priced the cart from) and service_area_version
-- (the area it checked the address against). On the create path, before any limit is
-- checked or counted, a version that is not the current one (a price changed, an item
-- deactivated, the area changed) answers 'stale_catalog' with nothing written; the worker
-- reloads its catalog and area and prices once more. A replay, a resume or a conflict is
-- answered as before, so a replay of a checkout made before a price change still answers
-- the original checkout. A p_new without catalog_versions is not checked (callers of
-- earlier revisions during a rolling deploy).
create or replace function h2s_begin_checkout(
    p_key_source text,
    p_idempotency_key text,
    p_derived_key text,
    p_request_fingerprint text,
    p_window_start timestamptz,
    p_now timestamptz,
    p_lease_until timestamptz,
    p_new text,
    p_steps jsonb,
    p_transition jsonb,
    p_limit_buckets text[] default '{}',
    p_limits integer[] default '{}'
) returns table (
    outcome text,
    checkout_id uuid,
    state text,
    response_status integer,
    response_json text,
    order_id text,
    job_id uuid,
    session_request jsonb,
    attempts integer,
    limited_by text,
    retry_after_s integer
)
language plpgsql as $$
#variable_conflict use_column
declare
    c record;
    v_new jsonb;
    v_checkout_id uuid;
    v_recipient_id uuid;
    v_job record;
    v_attempts integer;
    v_limit_window timestamptz := date_trunc('minute', p_now);
    v_limit record;
    v_hits integer;
    v_looked_twice boolean := false;
begin
    <<look>>
    loop
        -- The checkout this request retries: by client key, or by derived key within the
        -- window (20261127000006: a booking that ended unkept holds nothing).
        if p_key_source = 'client' then
            select k.checkout_id, k.key_source, k.request_fingerprint, k.state,
                   k.response_status, k.response_body, k.order_id, k.job_id, k.attempts,
                   k.locked_until
            into c
            from h2s_checkouts k
            where k.key_source = 'client' and k.idempotency_key = p_idempotency_key
              and k.state <> 'cleaned';
        else
            select k.checkout_id, k.key_source, k.request_fingerprint, k.state,
                   k.response_status, k.response_body, k.order_id, k.job_id, k.attempts,
                   k.locked_until
            into c
            from h2s_checkouts k
            where k.derived_key = p_derived_key
              and k.state not in ('cleaned', 'expired', 'payment_failed', 'cancelled',
                                  'refund_pending', 'refunded', 'refund_failed')
              and k.created_at > p_window_start
            order by k.created_at desc
            limit 1;
        end if;
        if c.checkout_id is not null and c.key_source = 'client'
           and c.request_fingerprint <> p_request_fingerprint then
            return query select 'key_reused', c.checkout_id, c.state, null::integer,
                                null::text, null::text, null::uuid, null::jsonb,
                                null::integer, null::text, null::integer;
            return;
        end if;
        exit look when v_looked_twice or (c.checkout_id is not null
                                          and c.response_status is not null);
        if p_new is null then
            -- A replay's call (the worker has answered this key before): nothing to
            -- create with, so no lock is taken and nothing is written; the worker sends
            -- the whole call next.
            return query select 'absent', c.checkout_id, c.state, null::integer,
                                null::text, null::text, null::uuid, null::jsonb,
                                null::integer, null::text, null::integer;
            return;
        end if;
        -- Not answered yet (or not there): queue behind the key's lock, then look again
        -- with a fresh snapshot that sees what the lock's previous holder committed.
        perform pg_advisory_xact_lock(hashtextextended(
            'h2s-checkout:' || p_key_source || ':'
                || coalesce(p_idempotency_key, p_derived_key), 0));
        v_looked_twice := true;
    end loop;

    if c.checkout_id is null then
        v_new := p_new::jsonb;
        -- The prices and the service area this request was checked against, by version
        -- (flows/begin_checkout.py). The shared lock is held to the commit; a change of the
        -- catalog or the area takes it exclusively (store/catalog.py), so either the
        -- change committed before this statement and its versions differ here, or it
        -- waits until this checkout has committed at the prices read. Stale: nothing is
        -- written or counted, and the worker reloads and prices once more.
        if v_new ? 'catalog_versions' then
            perform pg_advisory_xact_lock_shared(hashtextextended('h2s-catalog', 0));
            -- One statement (its snapshot taken after the lock above): an item priced at
            -- a version that is not its current active one, or another area version.
            if exists (select from jsonb_each_text(v_new->'catalog_versions') as v(sku, version)
                       left join h2s_service_catalog s
                           on s.sku = v.sku and s.active and s.version = v.version::integer
                       where s.sku is null)
               or coalesce((select a.version from h2s_service_area a), 0)
                   <> (v_new->>'service_area_version')::integer then
                return query select 'stale_catalog', null::uuid, null::text, null::integer,
                                    null::text, null::text, null::uuid, null::jsonb,
                                    null::integer, null::text, null::integer;
                return;
            end if;
        end if;

        -- The limits, on this path only. Each bucket's advisory lock is taken before its
        -- count is read and held to the end of the transaction, so two replicas creating
        -- the last checkout a window allows cannot both see room for it. Locks are taken
        -- in one order everywhere (the key's above, then buckets by name): no deadlock.
        for v_limit in select u.bucket, u.max_hits
                       from unnest(p_limit_buckets, p_limits) as u(bucket, max_hits)
                       order by u.bucket loop
            perform pg_advisory_xact_lock(hashtextextended('h2s-limit:' || v_limit.bucket, 0));
            select r.hits into v_hits from h2s_rate_counters r
            where r.bucket = v_limit.bucket and r.window_start = v_limit_window;
            if v_hits >= v_limit.max_hits then
                return query select 'rate_limited', null::uuid, null::text, null::integer,
                                    null::text, null::text, null::uuid, null::jsonb,
                                    null::integer, split_part(v_limit.bucket, ':', 1),
                                    greatest(1, ceil(extract(epoch from
                                        v_limit_window + interval '1 minute' - p_now)))::integer;
                return;
            end if;
        end loop;

        v_checkout_id := (v_new->>'checkout_id')::uuid;

        insert into h2s_recipients (email_normalized, email, name, phone)
        values (v_new->>'email_normalized', v_new->>'email', v_new->>'name', v_new->>'phone')
        on conflict (email_normalized) do update
            set name = excluded.name, phone = excluded.phone, email = excluded.email,
                updated_at = now()
        returning recipient_id into v_recipient_id;

        insert into h2s_checkouts (
            checkout_id, state, idempotency_key, key_source, derived_key, request_fingerprint,
            request_body, stripe_idempotency_key, created_at, updated_at, locked_until,
            session_request, order_id, job_id)
        values (
            v_checkout_id, p_transition->>'to_state', p_idempotency_key, p_key_source,
            p_derived_key, p_request_fingerprint, v_new->'request_body',
            v_new->>'stripe_idempotency_key', p_now, (p_transition->>'at')::timestamptz,
            p_lease_until, v_new->'session_request', v_new->>'order_id',
            (v_new->>'job_id')::uuid);

        insert into h2s_orders (
            order_id, checkout_id, recipient_id, status, customer, items,
            subtotal_cents, total_cents, currency, created_at, updated_at)
        values (
            v_new->>'order_id', v_checkout_id, v_recipient_id, 'pending_payment',
            v_new->'customer', v_new->'items', (v_new->>'subtotal_cents')::integer,
            (v_new->>'total_cents')::integer, v_new->>'currency', p_now, p_now);

        insert into h2s_dispatch_jobs (
            job_id, order_id, recipient_id, sequence_id, step_id, status, due_at, metadata,
            created_at, updated_at)
        select (v_new->>'job_id')::uuid, v_new->>'order_id', v_recipient_id, s.sequence_id,
               st.step_id, 'queued', (v_new->>'job_due_at')::timestamptz,
               v_new->'job_metadata', p_now, p_now
        from h2s_dispatch_sequences s
        join h2s_dispatch_steps st on st.sequence_id = s.sequence_id and st.is_start
        where s.is_default
        returning job_id, sequence_id, step_id, due_at into v_job;
        if v_job.job_id is null then
            raise exception 'no default dispatch sequence with a start step is configured'
                using errcode = 'H2S01';
        end if;

        perform h2s_write_trace_rows(v_checkout_id, p_steps || jsonb_build_array(
            jsonb_build_object(
                'event', 'order_and_job.created',
                'at', (p_transition->>'at')::timestamptz - interval '1 microsecond',
                'detail', jsonb_build_object(
                    'recipient_id', v_recipient_id, 'order_id', v_new->>'order_id',
                    'job_id', v_job.job_id, 'sequence_id', v_job.sequence_id,
                    'step_id', v_job.step_id, 'due_at', v_job.due_at)),
            p_transition || '{"kind": "transition"}'));

        if cardinality(p_limit_buckets) > 0 then  -- one more in each limit's window
            insert into h2s_rate_counters as r (bucket, window_start, hits)
            select u.bucket, v_limit_window, 1 from unnest(p_limit_buckets) as u(bucket)
            on conflict (bucket, window_start) do update set hits = r.hits + 1;
        end if;

        return query select 'created', v_checkout_id, p_transition->>'to_state',
                            null::integer, null::text, v_new->>'order_id',
                            (v_new->>'job_id')::uuid, v_new->'session_request', 1,
                            null::text, null::integer;
        return;
    end if;

    if c.response_status is not null then
        insert into h2s_checkout_traces (checkout_id, kind, event, detail)
        values (c.checkout_id, 'step', 'checkout.replayed',
                jsonb_build_object('key_source', p_key_source));
        return query select 'replayed', c.checkout_id, c.state, c.response_status,
                            c.response_body::text, c.order_id, c.job_id, null::jsonb,
                            c.attempts, null::text, null::integer;
        return;
    end if;

    if c.state = 'job_queued' and (c.locked_until is null or c.locked_until <= p_now) then
        update h2s_checkouts k
        set locked_until = p_lease_until, attempts = k.attempts + 1
        where k.checkout_id = c.checkout_id
        returning k.attempts into v_attempts;
        insert into h2s_checkout_traces (checkout_id, kind, event, detail)
        values (c.checkout_id, 'step', 'checkout.resumed',
                jsonb_build_object('attempt', v_attempts, 'from_state', 'job_queued'));
        return query select 'resumed', c.checkout_id, c.state, null::integer, null::text,
                            c.order_id, c.job_id,
                            (select k.session_request from h2s_checkouts k
                             where k.checkout_id = c.checkout_id),
                            v_attempts, null::text, null::integer;
        return;
    end if;

    insert into h2s_checkout_traces (checkout_id, kind, event, detail)
    values (c.checkout_id, 'step', 'checkout.conflict',
            jsonb_build_object('state', c.state, 'key_source', p_key_source));
    return query select 'conflict', c.checkout_id, c.state, null::integer, null::text,
                        c.order_id, c.job_id, null::jsonb, c.attempts,
                        null::text, null::integer;
end
$$;

-- migrate:down
-- The function as 20261202000001 made it.
create or replace function h2s_begin_checkout(
    p_key_source text,
    p_idempotency_key text,
    p_derived_key text,
    p_request_fingerprint text,
    p_window_start timestamptz,
    p_now timestamptz,
    p_lease_until timestamptz,
    p_new text,
    p_steps jsonb,
    p_transition jsonb,
    p_limit_buckets text[] default '{}',
    p_limits integer[] default '{}'
) returns table (
    outcome text,
    checkout_id uuid,
    state text,
    response_status integer,
    response_json text,
    order_id text,
    job_id uuid,
    session_request jsonb,
    attempts integer,
    limited_by text,
    retry_after_s integer
)
language plpgsql as $$
#variable_conflict use_column
declare
    c record;
    v_new jsonb;
    v_checkout_id uuid;
    v_recipient_id uuid;
    v_job record;
    v_attempts integer;
    v_limit_window timestamptz := date_trunc('minute', p_now);
    v_limit record;
    v_hits integer;
    v_looked_twice boolean := false;
begin
    <<look>>
    loop
        -- The checkout this request retries: by client key, or by derived key within the
        -- window (20261127000006: a booking that ended unkept holds nothing).
        if p_key_source = 'client' then
            select k.checkout_id, k.key_source, k.request_fingerprint, k.state,
                   k.response_status, k.response_body, k.order_id, k.job_id, k.attempts,
                   k.locked_until
            into c
            from h2s_checkouts k
            where k.key_source = 'client' and k.idempotency_key = p_idempotency_key
              and k.state <> 'cleaned';
        else
            select k.checkout_id, k.key_source, k.request_fingerprint, k.state,
                   k.response_status, k.response_body, k.order_id, k.job_id, k.attempts,
                   k.locked_until
            into c
            from h2s_checkouts k
            where k.derived_key = p_derived_key
              and k.state not in ('cleaned', 'expired', 'payment_failed', 'cancelled',
                                  'refund_pending', 'refunded', 'refund_failed')
              and k.created_at > p_window_start
            order by k.created_at desc
            limit 1;
        end if;
        if c.checkout_id is not null and c.key_source = 'client'
           and c.request_fingerprint <> p_request_fingerprint then
            return query select 'key_reused', c.checkout_id, c.state, null::integer,
                                null::text, null::text, null::uuid, null::jsonb,
                                null::integer, null::text, null::integer;
            return;
        end if;
        exit look when v_looked_twice or (c.checkout_id is not null
                                          and c.response_status is not null);
        if p_new is null then
            -- A replay's call (the worker has answered this key before): nothing to
            -- create with, so no lock is taken and nothing is written; the worker sends
            -- the whole call next.
            return query select 'absent', c.checkout_id, c.state, null::integer,
                                null::text, null::text, null::uuid, null::jsonb,
                                null::integer, null::text, null::integer;
            return;
        end if;
        -- Not answered yet (or not there): queue behind the key's lock, then look again
        -- with a fresh snapshot that sees what the lock's previous holder committed.
        perform pg_advisory_xact_lock(hashtextextended(
            'h2s-checkout:' || p_key_source || ':'
                || coalesce(p_idempotency_key, p_derived_key), 0));
        v_looked_twice := true;
    end loop;

    if c.checkout_id is null then
        -- The limits, on this path only. Each bucket's advisory lock is taken before its
        -- count is read and held to the end of the transaction, so two replicas creating
        -- the last checkout a window allows cannot both see room for it. Locks are taken
        -- in one order everywhere (the key's above, then buckets by name): no deadlock.
        for v_limit in select u.bucket, u.max_hits
                       from unnest(p_limit_buckets, p_limits) as u(bucket, max_hits)
                       order by u.bucket loop
            perform pg_advisory_xact_lock(hashtextextended('h2s-limit:' || v_limit.bucket, 0));
            select r.hits into v_hits from h2s_rate_counters r
            where r.bucket = v_limit.bucket and r.window_start = v_limit_window;
            if v_hits >= v_limit.max_hits then
                return query select 'rate_limited', null::uuid, null::text, null::integer,
                                    null::text, null::text, null::uuid, null::jsonb,
                                    null::integer, split_part(v_limit.bucket, ':', 1),
                                    greatest(1, ceil(extract(epoch from
                                        v_limit_window + interval '1 minute' - p_now)))::integer;
                return;
            end if;
        end loop;

        v_new := p_new::jsonb;
        v_checkout_id := (v_new->>'checkout_id')::uuid;

        insert into h2s_recipients (email_normalized, email, name, phone)
        values (v_new->>'email_normalized', v_new->>'email', v_new->>'name', v_new->>'phone')
        on conflict (email_normalized) do update
            set name = excluded.name, phone = excluded.phone, email = excluded.email,
                updated_at = now()
        returning recipient_id into v_recipient_id;

        insert into h2s_checkouts (
            checkout_id, state, idempotency_key, key_source, derived_key, request_fingerprint,
            request_body, stripe_idempotency_key, created_at, updated_at, locked_until,
            session_request, order_id, job_id)
        values (
            v_checkout_id, p_transition->>'to_state', p_idempotency_key, p_key_source,
            p_derived_key, p_request_fingerprint, v_new->'request_body',
            v_new->>'stripe_idempotency_key', p_now, (p_transition->>'at')::timestamptz,
            p_lease_until, v_new->'session_request', v_new->>'order_id',
            (v_new->>'job_id')::uuid);

        insert into h2s_orders (
            order_id, checkout_id, recipient_id, status, customer, items,
            subtotal_cents, total_cents, currency, created_at, updated_at)
        values (
            v_new->>'order_id', v_checkout_id, v_recipient_id, 'pending_payment',
            v_new->'customer', v_new->'items', (v_new->>'subtotal_cents')::integer,
            (v_new->>'total_cents')::integer, v_new->>'currency', p_now, p_now);

        insert into h2s_dispatch_jobs (
            job_id, order_id, recipient_id, sequence_id, step_id, status, due_at, metadata,
            created_at, updated_at)
        select (v_new->>'job_id')::uuid, v_new->>'order_id', v_recipient_id, s.sequence_id,
               st.step_id, 'queued', (v_new->>'job_due_at')::timestamptz,
               v_new->'job_metadata', p_now, p_now
        from h2s_dispatch_sequences s
        join h2s_dispatch_steps st on st.sequence_id = s.sequence_id and st.is_start
        where s.is_default
        returning job_id, sequence_id, step_id, due_at into v_job;
        if v_job.job_id is null then
            raise exception 'no default dispatch sequence with a start step is configured'
                using errcode = 'H2S01';
        end if;

        perform h2s_write_trace_rows(v_checkout_id, p_steps || jsonb_build_array(
            jsonb_build_object(
                'event', 'order_and_job.created',
                'at', (p_transition->>'at')::timestamptz - interval '1 microsecond',
                'detail', jsonb_build_object(
                    'recipient_id', v_recipient_id, 'order_id', v_new->>'order_id',
                    'job_id', v_job.job_id, 'sequence_id', v_job.sequence_id,
                    'step_id', v_job.step_id, 'due_at', v_job.due_at)),
            p_transition || '{"kind": "transition"}'));

        if cardinality(p_limit_buckets) > 0 then  -- one more in each limit's window
            insert into h2s_rate_counters as r (bucket, window_start, hits)
            select u.bucket, v_limit_window, 1 from unnest(p_limit_buckets) as u(bucket)
            on conflict (bucket, window_start) do update set hits = r.hits + 1;
        end if;

        return query select 'created', v_checkout_id, p_transition->>'to_state',
                            null::integer, null::text, v_new->>'order_id',
                            (v_new->>'job_id')::uuid, v_new->'session_request', 1,
                            null::text, null::integer;
        return;
    end if;

    if c.response_status is not null then
        insert into h2s_checkout_traces (checkout_id, kind, event, detail)
        values (c.checkout_id, 'step', 'checkout.replayed',
                jsonb_build_object('key_source', p_key_source));
        return query select 'replayed', c.checkout_id, c.state, c.response_status,
                            c.response_body::text, c.order_id, c.job_id, null::jsonb,
                            c.attempts, null::text, null::integer;
        return;
    end if;

    if c.state = 'job_queued' and (c.locked_until is null or c.locked_until <= p_now) then
        update h2s_checkouts k
        set locked_until = p_lease_until, attempts = k.attempts + 1
        where k.checkout_id = c.checkout_id
        returning k.attempts into v_attempts;
        insert into h2s_checkout_traces (checkout_id, kind, event, detail)
        values (c.checkout_id, 'step', 'checkout.resumed',
                jsonb_build_object('attempt', v_attempts, 'from_state', 'job_queued'));
        return query select 'resumed', c.checkout_id, c.state, null::integer, null::text,
                            c.order_id, c.job_id,
                            (select k.session_request from h2s_checkouts k
                             where k.checkout_id = c.checkout_id),
                            v_attempts, null::text, null::integer;
        return;
    end if;

    insert into h2s_checkout_traces (checkout_id, kind, event, detail)
    values (c.checkout_id, 'step', 'checkout.conflict',
            jsonb_build_object('state', c.state, 'key_source', p_key_source));
    return query select 'conflict', c.checkout_id, c.state, null::integer, null::text,
                        c.order_id, c.job_id, null::jsonb, c.attempts,
                        null::text, null::integer;
end
$$;
