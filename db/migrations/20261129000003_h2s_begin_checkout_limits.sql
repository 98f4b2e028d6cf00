-- migrate:up

-- Limits on new checkouts, checked and counted inside phase 1 (still one round trip):
-- per client address and per customer email, over fixed one-minute windows in
-- h2s_rate_counters, so every replica counts against the same numbers.
--
-- Fixed windows rather than sliding ones: a limit is there to stop one client filling
-- the portal with queued jobs, not to meter traffic exactly, and a fixed window is one
-- counter row per bucket with an exact Retry-After (the seconds to the window's end). Its
-- known cost: a client may get up to twice the limit across a window boundary.

drop function h2s_begin_checkout(text, text, text, text, timestamptz, timestamptz,
                                 timestamptz, jsonb, jsonb, jsonb);

-- Phase 1 of a checkout in one round trip (flows/begin_checkout.py): find the checkout
-- this request retries, then replay, resume, refuse or create.
--
-- A checkout with its answer stored is replayed without any lock: its checkout.replayed
-- row is the only write. Otherwise the function takes the key's advisory lock (held to
-- the end of the call's transaction) and looks again: in a VOLATILE PL/pgSQL function each
-- statement takes a new snapshot, so the look after the lock sees what the previous holder
-- committed (a single SQL statement's snapshot would be older than the lock it waited
-- for). Under the lock it
--   * replays a checkout answered since the first look;
--   * takes over one still at job_queued whose lease ran out (the attempt that held it
--     died): 'resumed', with the stored Stripe request, so phases 2 and 3 run again with
--     the same order, job and Stripe idempotency key;
--   * refuses one whose lease is live: 'conflict' (the client gets 409 + Retry-After);
--   * refuses a new checkout over one of its limits: 'rate_limited' with limited_by
--     (address or email) and retry_after_s, nothing written (the client gets 429);
--   * or writes the new checkout: recipient upsert, checkout (born in the state its
--     first transition enters), order, job at the default flow's start step, the trace
--     rows (the steps before the transition, order_and_job.created, the transition), and
--     one more hit in each limit's window.
-- Only that last branch counts against a limit: replays, resumptions and conflicts do not.
-- A client key reused with another body is 'key_reused' and writes nothing.
--
-- p_new: checkout_id, order_id, job_id, stripe_idempotency_key, request_body,
--   session_request, email_normalized, email, name, phone, customer, items,
--   subtotal_cents, total_cents, currency, job_due_at, job_metadata.
-- p_transition: event, from_state, to_state, at, detail (decided by the state machine).
-- p_limit_buckets, p_limits: the limits on a new checkout, "address:…" and "email:…"
--   with the most checkouts each allows per minute; empty arrays: no limit.
create function h2s_begin_checkout(
    p_key_source text,
    p_idempotency_key text,
    p_derived_key text,
    p_request_fingerprint text,
    p_window_start timestamptz,
    p_now timestamptz,
    p_lease_until timestamptz,
    p_new jsonb,
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
    c h2s_checkouts;
    v_checkout_id uuid := (p_new->>'checkout_id')::uuid;
    v_recipient_id uuid;
    v_job record;
    v_attempts integer;
    v_limit_window timestamptz := date_trunc('minute', p_now);
    v_limit record;
    v_hits integer;
begin
    c := h2s_find_claimed_checkout(p_key_source, p_idempotency_key, p_derived_key, p_window_start);
    if c.checkout_id is not null and c.key_source = 'client'
       and c.request_fingerprint <> p_request_fingerprint then
        return query select 'key_reused', c.checkout_id, c.state, null::integer, null::text,
                            null::text, null::uuid, null::jsonb, null::integer,
                            null::text, null::integer;
        return;
    end if;
    if c.checkout_id is null or c.response_status is null then
        perform pg_advisory_xact_lock(hashtextextended(
            'h2s-checkout:' || p_key_source || ':'
                || coalesce(p_idempotency_key, p_derived_key), 0));
        c := h2s_find_claimed_checkout(
            p_key_source, p_idempotency_key, p_derived_key, p_window_start);
    end if;

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

        insert into h2s_recipients (email_normalized, email, name, phone)
        values (p_new->>'email_normalized', p_new->>'email', p_new->>'name', p_new->>'phone')
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
            p_derived_key, p_request_fingerprint, p_new->'request_body',
            p_new->>'stripe_idempotency_key', p_now, (p_transition->>'at')::timestamptz,
            p_lease_until, p_new->'session_request', p_new->>'order_id',
            (p_new->>'job_id')::uuid);

        insert into h2s_orders (
            order_id, checkout_id, recipient_id, status, customer, items,
            subtotal_cents, total_cents, currency, created_at, updated_at)
        values (
            p_new->>'order_id', v_checkout_id, v_recipient_id, 'pending_payment',
            p_new->'customer', p_new->'items', (p_new->>'subtotal_cents')::integer,
            (p_new->>'total_cents')::integer, p_new->>'currency', p_now, p_now);

        insert into h2s_dispatch_jobs (
            job_id, order_id, recipient_id, sequence_id, step_id, status, due_at, metadata,
            created_at, updated_at)
        select (p_new->>'job_id')::uuid, p_new->>'order_id', v_recipient_id, s.sequence_id,
               st.step_id, 'queued', (p_new->>'job_due_at')::timestamptz,
               p_new->'job_metadata', p_now, p_now
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
                    'recipient_id', v_recipient_id, 'order_id', p_new->>'order_id',
                    'job_id', v_job.job_id, 'sequence_id', v_job.sequence_id,
                    'step_id', v_job.step_id, 'due_at', v_job.due_at)),
            p_transition || '{"kind": "transition"}'));

        if cardinality(p_limit_buckets) > 0 then  -- one more in each limit's window
            insert into h2s_rate_counters as r (bucket, window_start, hits)
            select u.bucket, v_limit_window, 1 from unnest(p_limit_buckets) as u(bucket)
            on conflict (bucket, window_start) do update set hits = r.hits + 1;
        end if;

        return query select 'created', v_checkout_id, p_transition->>'to_state',
                            null::integer, null::text, p_new->>'order_id',
                            (p_new->>'job_id')::uuid, p_new->'session_request', 1,
                            null::text, null::integer;
        return;
    end if;

    if c.response_status is not null then
        perform h2s_write_trace_rows(c.checkout_id, jsonb_build_array(jsonb_build_object(
            'event', 'checkout.replayed', 'detail',
            jsonb_build_object('key_source', p_key_source))));
        return query select 'replayed', c.checkout_id, c.state, c.response_status,
                            c.response_body::text, c.order_id, c.job_id, null::jsonb,
                            c.attempts, null::text, null::integer;
        return;
    end if;

    if c.state = 'job_queued' and (c.locked_until is null or c.locked_until <= p_now) then
        update h2s_checkouts
        set locked_until = p_lease_until, attempts = h2s_checkouts.attempts + 1
        where checkout_id = c.checkout_id
        returning h2s_checkouts.attempts into v_attempts;
        perform h2s_write_trace_rows(c.checkout_id, jsonb_build_array(jsonb_build_object(
            'event', 'checkout.resumed', 'detail',
            jsonb_build_object('attempt', v_attempts, 'from_state', 'job_queued'))));
        return query select 'resumed', c.checkout_id, c.state, null::integer, null::text,
                            c.order_id, c.job_id, c.session_request, v_attempts,
                            null::text, null::integer;
        return;
    end if;

    perform h2s_write_trace_rows(c.checkout_id, jsonb_build_array(jsonb_build_object(
        'event', 'checkout.conflict', 'detail',
        jsonb_build_object('state', c.state, 'key_source', p_key_source))));
    return query select 'conflict', c.checkout_id, c.state, null::integer, null::text,
                        c.order_id, c.job_id, null::jsonb, c.attempts,
                        null::text, null::integer;
end
$$;

-- migrate:down
drop function h2s_begin_checkout(text, text, text, text, timestamptz, timestamptz,
                                 timestamptz, jsonb, jsonb, jsonb, text[], integer[]);

-- Phase 1 as it was before limits (20261127000003_h2s_begin_checkout.sql).
create function h2s_begin_checkout(
    p_key_source text,
    p_idempotency_key text,
    p_derived_key text,
    p_request_fingerprint text,
    p_window_start timestamptz,
    p_now timestamptz,
    p_lease_until timestamptz,
    p_new jsonb,
    p_steps jsonb,
    p_transition jsonb
) returns table (
    outcome text,
    checkout_id uuid,
    state text,
    response_status integer,
    response_json text,
    order_id text,
    job_id uuid,
    session_request jsonb,
    attempts integer
)
language plpgsql as $$
#variable_conflict use_column
declare
    c h2s_checkouts;
    v_checkout_id uuid := (p_new->>'checkout_id')::uuid;
    v_recipient_id uuid;
    v_job record;
    v_attempts integer;
begin
    c := h2s_find_claimed_checkout(p_key_source, p_idempotency_key, p_derived_key, p_window_start);
    if c.checkout_id is not null and c.key_source = 'client'
       and c.request_fingerprint <> p_request_fingerprint then
        return query select 'key_reused', c.checkout_id, c.state, null::integer, null::text,
                            null::text, null::uuid, null::jsonb, null::integer;
        return;
    end if;
    if c.checkout_id is null or c.response_status is null then
        perform pg_advisory_xact_lock(hashtextextended(
            'h2s-checkout:' || p_key_source || ':'
                || coalesce(p_idempotency_key, p_derived_key), 0));
        c := h2s_find_claimed_checkout(
            p_key_source, p_idempotency_key, p_derived_key, p_window_start);
    end if;

    if c.checkout_id is null then
        insert into h2s_recipients (email_normalized, email, name, phone)
        values (p_new->>'email_normalized', p_new->>'email', p_new->>'name', p_new->>'phone')
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
            p_derived_key, p_request_fingerprint, p_new->'request_body',
            p_new->>'stripe_idempotency_key', p_now, (p_transition->>'at')::timestamptz,
            p_lease_until, p_new->'session_request', p_new->>'order_id',
            (p_new->>'job_id')::uuid);

        insert into h2s_orders (
            order_id, checkout_id, recipient_id, status, customer, items,
            subtotal_cents, total_cents, currency, created_at, updated_at)
        values (
            p_new->>'order_id', v_checkout_id, v_recipient_id, 'pending_payment',
            p_new->'customer', p_new->'items', (p_new->>'subtotal_cents')::integer,
            (p_new->>'total_cents')::integer, p_new->>'currency', p_now, p_now);

        insert into h2s_dispatch_jobs (
            job_id, order_id, recipient_id, sequence_id, step_id, status, due_at, metadata,
            created_at, updated_at)
        select (p_new->>'job_id')::uuid, p_new->>'order_id', v_recipient_id, s.sequence_id,
               st.step_id, 'queued', (p_new->>'job_due_at')::timestamptz,
               p_new->'job_metadata', p_now, p_now
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
                    'recipient_id', v_recipient_id, 'order_id', p_new->>'order_id',
                    'job_id', v_job.job_id, 'sequence_id', v_job.sequence_id,
                    'step_id', v_job.step_id, 'due_at', v_job.due_at)),
            p_transition || '{"kind": "transition"}'));

        return query select 'created', v_checkout_id, p_transition->>'to_state',
                            null::integer, null::text, p_new->>'order_id',
                            (p_new->>'job_id')::uuid, p_new->'session_request', 1;
        return;
    end if;

    if c.response_status is not null then
        perform h2s_write_trace_rows(c.checkout_id, jsonb_build_array(jsonb_build_object(
            'event', 'checkout.replayed', 'detail',
            jsonb_build_object('key_source', p_key_source))));
        return query select 'replayed', c.checkout_id, c.state, c.response_status,
                            c.response_body::text, c.order_id, c.job_id, null::jsonb,
                            c.attempts;
        return;
    end if;

    if c.state = 'job_queued' and (c.locked_until is null or c.locked_until <= p_now) then
        update h2s_checkouts
        set locked_until = p_lease_until, attempts = h2s_checkouts.attempts + 1
        where checkout_id = c.checkout_id
        returning h2s_checkouts.attempts into v_attempts;
        perform h2s_write_trace_rows(c.checkout_id, jsonb_build_array(jsonb_build_object(
            'event', 'checkout.resumed', 'detail',
            jsonb_build_object('attempt', v_attempts, 'from_state', 'job_queued'))));
        return query select 'resumed', c.checkout_id, c.state, null::integer, null::text,
                            c.order_id, c.job_id, c.session_request, v_attempts;
        return;
    end if;

    perform h2s_write_trace_rows(c.checkout_id, jsonb_build_array(jsonb_build_object(
        'event', 'checkout.conflict', 'detail',
        jsonb_build_object('state', c.state, 'key_source', p_key_source))));
    return query select 'conflict', c.checkout_id, c.state, null::integer, null::text,
                        c.order_id, c.job_id, null::jsonb, c.attempts;
end
$$;

