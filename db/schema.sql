\restrict dbmate

-- Dumped from database version 18.6
-- Dumped by pg_dump version 18.6

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: h2s_begin_checkout(text, text, text, text, timestamp with time zone, timestamp with time zone, timestamp with time zone, text, jsonb, jsonb, text[], integer[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.h2s_begin_checkout(p_key_source text, p_idempotency_key text, p_derived_key text, p_request_fingerprint text, p_window_start timestamp with time zone, p_now timestamp with time zone, p_lease_until timestamp with time zone, p_new text, p_steps jsonb, p_transition jsonb, p_limit_buckets text[] DEFAULT '{}'::text[], p_limits integer[] DEFAULT '{}'::integer[]) RETURNS TABLE(outcome text, checkout_id uuid, state text, response_status integer, response_json text, order_id text, job_id uuid, session_request jsonb, attempts integer, limited_by text, retry_after_s integer)
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: h2s_enqueue_catalog_event(text, jsonb, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.h2s_enqueue_catalog_event(p_type text, p_data jsonb, p_sequence integer) RETURNS text
    LANGUAGE plpgsql
    AS $$
declare
    v_event_id text := 'evt_' || replace(gen_random_uuid()::text, '-', '');
    v_at timestamptz := clock_timestamp();
    v_endpoints text[];
begin
    if p_type not in ('catalog.item_created', 'catalog.item_updated',
                      'service_area.updated') then
        raise exception 'unknown catalog event type %', p_type using errcode = '22023';
    end if;
    select array_agg(e.endpoint_id order by e.endpoint_id) into v_endpoints
    from h2s_event_endpoints e
    where e.status = 'enabled' and e.event_types && array['*', p_type];
    if v_endpoints is null then
        return null;
    end if;
    insert into h2s_events (event_id, order_id, checkout_id, type, sequence, created_at, body)
    values (v_event_id, null, null, p_type, p_sequence, v_at,
            jsonb_build_object(
                'type', p_type,
                'timestamp', to_char(v_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                'data', p_data || jsonb_build_object('sequence', p_sequence)));
    insert into h2s_event_deliveries (delivery_id, event_id, endpoint_id)
    select 'dlv_' || replace(gen_random_uuid()::text, '-', ''), v_event_id, e.endpoint_id
    from unnest(v_endpoints) as e(endpoint_id);
    if pg_try_advisory_xact_lock(7233, 1) then
        perform pg_notify('h2s_events', '');
    end if;
    return v_event_id;
end
$$;


--
-- Name: h2s_enqueue_order_event(text, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.h2s_enqueue_order_event(p_order_id text, p_type text) RETURNS text
    LANGUAGE plpgsql
    AS $$
declare
    v_event_id text := 'evt_' || replace(gen_random_uuid()::text, '-', '');
    v_at timestamptz := clock_timestamp();
    v_endpoints text[];
    v_order h2s_orders;
    v_sequence integer;
begin
    if p_type not in ('order.created', 'order.paid', 'order.expired', 'order.cancelled',
                      'order.refund_pending', 'order.refunded', 'order.refund_failed',
                      'order.authorized', 'job.completed', 'order.captured',
                      'order.refunded_partially', 'order.authorization_expired') then
        raise exception 'unknown event type %', p_type using errcode = '22023';
    end if;
    select array_agg(e.endpoint_id order by e.endpoint_id) into v_endpoints
    from h2s_event_endpoints e
    where e.status = 'enabled' and e.event_types && array['*', p_type];
    if v_endpoints is null then
        return null;
    end if;
    select * into v_order from h2s_orders where order_id = p_order_id for update;
    if not found then
        raise exception 'no order %', p_order_id using errcode = 'H2S02';
    end if;
    -- Counted on from the order's last event, or from the last one the reaper deleted.
    select greatest(coalesce(max(e.sequence), 0),
                    coalesce((select f.sequence from h2s_event_sequence_floors f
                              where f.order_id = p_order_id), 0)) + 1
    into v_sequence
    from h2s_events e where e.order_id = p_order_id;
    insert into h2s_events (event_id, order_id, checkout_id, type, sequence, created_at, body)
    select v_event_id, p_order_id, v_order.checkout_id, p_type, v_sequence, v_at,
           jsonb_build_object(
               'type', p_type,
               'timestamp', to_char(v_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'data', jsonb_build_object(
                   'order', to_jsonb(v_order),
                   'job', (select to_jsonb(j) from h2s_dispatch_jobs j
                           where j.order_id = p_order_id),
                   'checkout_trace_id', v_order.checkout_id,
                   'sequence', v_sequence));
    insert into h2s_event_deliveries (delivery_id, event_id, endpoint_id)
    select 'dlv_' || replace(gen_random_uuid()::text, '-', ''), v_event_id, e.endpoint_id
    from unnest(v_endpoints) as e(endpoint_id);
    if pg_try_advisory_xact_lock(7233, 1) then
        perform pg_notify('h2s_events', '');
    end if;
    return v_event_id;
end
$$;


--
-- Name: h2s_event_delivery_to_enabled_endpoint(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.h2s_event_delivery_to_enabled_endpoint() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
begin
    perform 1 from h2s_event_endpoints p
    where p.endpoint_id = new.endpoint_id and p.status = 'enabled'
    for share;
    if not found then
        return null;  -- disabled or deleted meanwhile: nothing to deliver
    end if;
    return new;
end
$$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: h2s_checkouts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_checkouts (
    checkout_id uuid NOT NULL,
    state text NOT NULL,
    idempotency_key text,
    key_source text NOT NULL,
    derived_key text NOT NULL,
    request_fingerprint text NOT NULL,
    request_body jsonb NOT NULL,
    stripe_idempotency_key text NOT NULL,
    order_id text,
    job_id uuid,
    session_id text,
    response_status integer,
    response_body jsonb,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    locked_until timestamp with time zone,
    attempts integer DEFAULT 1 NOT NULL,
    session_request jsonb,
    needs_settlement boolean DEFAULT false NOT NULL,
    capture_policy text GENERATED ALWAYS AS (
CASE
    WHEN ((session_request ->> 'capture_method'::text) = 'manual'::text) THEN 'on_completion'::text
    ELSE 'at_booking'::text
END) STORED,
    CONSTRAINT h2s_checkouts_key_source_check CHECK ((key_source = ANY (ARRAY['client'::text, 'derived'::text]))),
    CONSTRAINT h2s_checkouts_state_check CHECK ((state = ANY (ARRAY['pending_payment'::text, 'job_queued'::text, 'session_created'::text, 'paid'::text, 'expired'::text, 'payment_failed'::text, 'cancelled'::text, 'refund_pending'::text, 'refunded'::text, 'refund_failed'::text, 'failed'::text, 'cleaned'::text, 'authorized'::text, 'capture_pending'::text, 'authorization_expired'::text, 'partially_refunded'::text])))
);


--
-- Name: h2s_find_claimed_checkout(text, text, text, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.h2s_find_claimed_checkout(p_key_source text, p_idempotency_key text, p_derived_key text, p_window_start timestamp with time zone) RETURNS public.h2s_checkouts
    LANGUAGE sql STABLE
    AS $$
    select c.* from h2s_checkouts c
    where p_key_source = 'client'
      and c.key_source = 'client' and c.idempotency_key = p_idempotency_key
      and c.state <> 'cleaned'
    union all
    (select c.* from h2s_checkouts c
     where p_key_source = 'derived'
       and c.derived_key = p_derived_key
       and c.state not in ('cleaned', 'expired', 'payment_failed', 'cancelled',
                           'refund_pending', 'refunded', 'refund_failed')
       and c.created_at > p_window_start
     order by c.created_at desc
     limit 1)
    limit 1
$$;


--
-- Name: h2s_in_trace(text, anyelement); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.h2s_in_trace(p_traceparent text, p_value anyelement) RETURNS anyelement
    LANGUAGE plpgsql
    AS $$
begin
    perform set_config('h2s.traceparent', p_traceparent, true);
    return p_value;
end
$$;


--
-- Name: h2s_link_session(uuid, text, text, timestamp with time zone, text, uuid, jsonb, jsonb); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.h2s_link_session(p_checkout_id uuid, p_from_state text, p_to_state text, p_at timestamp with time zone, p_session_id text, p_job_id uuid, p_response jsonb, p_trace jsonb) RETURNS TABLE(linked boolean, state text, response_status integer, response_json text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
declare
    v_order_id text;
begin
    update h2s_checkouts
    set state = p_to_state, updated_at = p_at, session_id = p_session_id,
        response_status = 201, response_body = p_response, locked_until = null
    where checkout_id = p_checkout_id and state = p_from_state
    returning order_id into v_order_id;
    if not found then
        return query select false, c.state, c.response_status, c.response_body::text
                     from h2s_checkouts c where c.checkout_id = p_checkout_id;
        return;
    end if;
    update h2s_orders o
    set session_id = p_session_id,
        metadata_json = o.metadata_json || jsonb_build_object(
            'dispatch_job_id', p_job_id::text, 'checkout_trace_id', p_checkout_id::text),
        updated_at = p_at
    where o.order_id = v_order_id;
    -- The order is announced once its customer has a pay link (docs/events.md).
    perform h2s_enqueue_order_event(v_order_id, 'order.created');
    perform h2s_write_trace_rows(p_checkout_id, p_trace);
    return query select true, p_to_state, 201, null::text;
end
$$;


--
-- Name: h2s_replay_checkouts(text[], text[], text[], text[], timestamp with time zone[], timestamp with time zone[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.h2s_replay_checkouts(p_key_sources text[], p_idempotency_keys text[], p_derived_keys text[], p_request_fingerprints text[], p_window_starts timestamp with time zone[], p_nows timestamp with time zone[]) RETURNS TABLE(ord bigint, outcome text, checkout_id uuid, state text, response_status integer, response_json text, order_id text, job_id uuid, session_request jsonb, attempts integer, limited_by text, retry_after_s integer)
    LANGUAGE sql
    AS $$
    with decided as (
        select u.ord, u.key_source, c.*,
               case when c.checkout_id is not null and c.found_key_source = 'client'
                         and c.found_fingerprint <> u.request_fingerprint then 'key_reused'
                    when c.response_status is not null then 'replayed'
                    else 'absent' end as outcome
        from unnest(p_key_sources, p_idempotency_keys, p_derived_keys, p_request_fingerprints,
                    p_window_starts)
             with ordinality as u(key_source, idempotency_key, derived_key,
                                  request_fingerprint, window_start, ord)
        left join lateral (
            select k.checkout_id, k.key_source as found_key_source,
                   k.request_fingerprint as found_fingerprint, k.state, k.response_status,
                   k.response_body, k.order_id, k.job_id, k.attempts
            from h2s_checkouts k
            where u.key_source = 'client' and k.key_source = 'client'
              and k.idempotency_key = u.idempotency_key and k.state <> 'cleaned'
            union all
            (select k.checkout_id, k.key_source, k.request_fingerprint, k.state,
                    k.response_status, k.response_body, k.order_id, k.job_id, k.attempts
             from h2s_checkouts k
             where u.key_source is distinct from 'client' and k.derived_key = u.derived_key
               and k.state not in ('cleaned', 'expired', 'payment_failed', 'cancelled',
                                   'refund_pending', 'refunded', 'refund_failed')
               and k.created_at > u.window_start
             order by k.created_at desc
             limit 1)
            limit 1
        ) c on true
    ),
    traced as (
        insert into h2s_checkout_traces (checkout_id, kind, event, detail)
        select d.checkout_id, 'step', 'checkout.replayed',
               jsonb_build_object('key_source', d.key_source)
        from decided d
        where d.outcome = 'replayed'
        order by d.ord
    )
    select d.ord, d.outcome, d.checkout_id, d.state,
           case when d.outcome = 'replayed' then d.response_status end,
           case when d.outcome = 'replayed' then d.response_body::text end,
           case when d.outcome = 'replayed' then d.order_id end,
           case when d.outcome = 'replayed' then d.job_id end,
           null::jsonb,
           case when d.outcome = 'replayed' then d.attempts end,
           null::text, null::integer
    from decided d
    order by d.ord
$$;


--
-- Name: h2s_session_expires_at(jsonb); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.h2s_session_expires_at(p_session_request jsonb) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ((p_session_request ->> 'expires_at'::text))::timestamp with time zone;


--
-- Name: h2s_write_trace_rows(uuid, jsonb); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.h2s_write_trace_rows(p_checkout_id uuid, p_rows jsonb) RETURNS integer
    LANGUAGE sql
    AS $$
    with written as (
        insert into h2s_checkout_traces (
            checkout_id, kind, event, from_state, to_state, at, duration_ms, detail)
        select p_checkout_id,
               coalesce(r.value->>'kind', 'step'),
               r.value->>'event',
               r.value->>'from_state',
               r.value->>'to_state',
               coalesce((r.value->>'at')::timestamptz, clock_timestamp()),
               (r.value->>'duration_ms')::float8,
               coalesce(r.value->'detail', '{}'::jsonb)
        from jsonb_array_elements(p_rows) with ordinality as r(value, position)
        order by r.position
        returning 1
    )
    select count(*)::integer from written
$$;


--
-- Name: h2s_admin_sessions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_admin_sessions (
    session_hash bytea NOT NULL,
    key_hash bytea,
    data bytea NOT NULL,
    created_at timestamp with time zone NOT NULL,
    expires_at timestamp with time zone NOT NULL
);


--
-- Name: h2s_api_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_api_keys (
    key_id uuid NOT NULL,
    name text NOT NULL,
    scopes text[] NOT NULL,
    key_hash bytea NOT NULL,
    key_hint text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    created_by text NOT NULL,
    expires_at timestamp with time zone,
    revoked_at timestamp with time zone,
    revoked_by text,
    last_used_at timestamp with time zone,
    CONSTRAINT h2s_api_keys_scopes_check CHECK (((cardinality(scopes) > 0) AND (scopes <@ ARRAY['read'::text, 'operate'::text, 'admin'::text, 'checkout'::text, 'catalog'::text, 'dispatch'::text])))
);


--
-- Name: h2s_captures; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_captures (
    capture_id uuid NOT NULL,
    checkout_id uuid NOT NULL,
    order_id text NOT NULL,
    job_id uuid NOT NULL,
    amount_cents integer NOT NULL,
    currency text NOT NULL,
    payment_intent text NOT NULL,
    idempotency_key text NOT NULL,
    note text,
    actor text NOT NULL,
    status text DEFAULT 'requested'::text NOT NULL,
    amount_captured_cents integer,
    failure_code text,
    locked_until timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT h2s_captures_amount_cents_check CHECK ((amount_cents > 0)),
    CONSTRAINT h2s_captures_status_check CHECK ((status = ANY (ARRAY['requested'::text, 'succeeded'::text, 'failed'::text])))
);


--
-- Name: h2s_catalog_history; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_catalog_history (
    change_id bigint NOT NULL,
    subject text NOT NULL,
    sku text,
    version integer NOT NULL,
    action text NOT NULL,
    actor text NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    before jsonb,
    after jsonb NOT NULL,
    CONSTRAINT h2s_catalog_history_action_check CHECK ((action = ANY (ARRAY['created'::text, 'updated'::text, 'deactivated'::text, 'reactivated'::text]))),
    CONSTRAINT h2s_catalog_history_check CHECK (((subject = 'item'::text) = (sku IS NOT NULL))),
    CONSTRAINT h2s_catalog_history_subject_check CHECK ((subject = ANY (ARRAY['item'::text, 'service_area'::text])))
);


--
-- Name: h2s_catalog_history_change_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.h2s_catalog_history ALTER COLUMN change_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.h2s_catalog_history_change_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: h2s_checkout_failures; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_checkout_failures (
    failure_id bigint NOT NULL,
    checkout_id uuid NOT NULL,
    phase text NOT NULL,
    error_code text NOT NULL,
    error_class text NOT NULL,
    message text NOT NULL,
    provider_request_id text,
    provider_code text,
    http_status integer,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);


--
-- Name: h2s_checkout_failures_failure_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.h2s_checkout_failures ALTER COLUMN failure_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.h2s_checkout_failures_failure_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: h2s_checkout_traces; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_checkout_traces (
    seq bigint NOT NULL,
    checkout_id uuid NOT NULL,
    kind text NOT NULL,
    event text NOT NULL,
    from_state text,
    to_state text,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    duration_ms double precision,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL,
    otel_trace_id text DEFAULT NULLIF(split_part(current_setting('h2s.traceparent'::text, true), '-'::text, 2), ''::text),
    CONSTRAINT h2s_checkout_traces_kind_check CHECK ((kind = ANY (ARRAY['transition'::text, 'step'::text])))
);


--
-- Name: h2s_checkout_traces_seq_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.h2s_checkout_traces ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.h2s_checkout_traces_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: h2s_dispatch_jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_dispatch_jobs (
    job_id uuid NOT NULL,
    order_id text NOT NULL,
    recipient_id uuid NOT NULL,
    sequence_id text NOT NULL,
    step_id text NOT NULL,
    status text NOT NULL,
    due_at timestamp with time zone NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    completed_at timestamp with time zone,
    payment_flag text,
    CONSTRAINT h2s_dispatch_jobs_payment_flag_check CHECK ((payment_flag = 'authorization_expired'::text)),
    CONSTRAINT h2s_dispatch_jobs_status_check CHECK ((status = ANY (ARRAY['queued'::text, 'dispatchable'::text, 'cancelled'::text, 'completed'::text])))
);


--
-- Name: h2s_dispatch_sequences; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_dispatch_sequences (
    sequence_id text NOT NULL,
    name text NOT NULL,
    is_default boolean DEFAULT false NOT NULL
);


--
-- Name: h2s_dispatch_steps; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_dispatch_steps (
    step_id text NOT NULL,
    sequence_id text NOT NULL,
    "position" integer NOT NULL,
    name text NOT NULL,
    is_start boolean DEFAULT false NOT NULL
);


--
-- Name: h2s_event_attempts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_event_attempts (
    attempt_id bigint NOT NULL,
    delivery_id text NOT NULL,
    attempt integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    duration_ms double precision,
    status_code integer,
    error text,
    response_body text
);


--
-- Name: h2s_event_attempts_attempt_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.h2s_event_attempts ALTER COLUMN attempt_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.h2s_event_attempts_attempt_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: h2s_event_deliveries; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_event_deliveries (
    delivery_id text NOT NULL,
    event_id text NOT NULL,
    endpoint_id text NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    tries integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT '-infinity'::timestamp with time zone NOT NULL,
    last_status_code integer,
    last_error text,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    delivered_at timestamp with time zone,
    CONSTRAINT h2s_event_deliveries_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text, 'cancelled'::text])))
);


--
-- Name: h2s_event_endpoints; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_event_endpoints (
    endpoint_id text NOT NULL,
    url text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    event_types text[] DEFAULT '{*}'::text[] NOT NULL,
    status text DEFAULT 'enabled'::text NOT NULL,
    status_reason text,
    secret text NOT NULL,
    previous_secret text,
    previous_secret_until timestamp with time zone,
    source text DEFAULT 'api'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT h2s_event_endpoints_source_check CHECK ((source = ANY (ARRAY['api'::text, 'environment'::text]))),
    CONSTRAINT h2s_event_endpoints_status_check CHECK ((status = ANY (ARRAY['enabled'::text, 'disabled'::text, 'deleted'::text])))
);


--
-- Name: h2s_event_sequence_floors; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_event_sequence_floors (
    order_id text NOT NULL,
    sequence integer NOT NULL
);


--
-- Name: h2s_events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_events (
    event_id text NOT NULL,
    order_id text,
    checkout_id uuid,
    type text NOT NULL,
    sequence integer NOT NULL,
    body jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    traceparent text DEFAULT NULLIF(current_setting('h2s.traceparent'::text, true), ''::text),
    CONSTRAINT h2s_events_subject_check CHECK (((order_id IS NULL) = (type = ANY (ARRAY['catalog.item_created'::text, 'catalog.item_updated'::text, 'service_area.updated'::text])))),
    CONSTRAINT h2s_events_type_check CHECK ((type = ANY (ARRAY['order.created'::text, 'order.paid'::text, 'order.expired'::text, 'order.cancelled'::text, 'order.refund_pending'::text, 'order.refunded'::text, 'order.refund_failed'::text, 'order.authorized'::text, 'job.completed'::text, 'order.captured'::text, 'order.refunded_partially'::text, 'order.authorization_expired'::text, 'catalog.item_created'::text, 'catalog.item_updated'::text, 'service_area.updated'::text])))
);


--
-- Name: h2s_orders; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_orders (
    order_id text NOT NULL,
    checkout_id uuid NOT NULL,
    recipient_id uuid NOT NULL,
    status text NOT NULL,
    customer jsonb NOT NULL,
    items jsonb NOT NULL,
    subtotal_cents integer NOT NULL,
    total_cents integer NOT NULL,
    currency text NOT NULL,
    session_id text,
    metadata_json jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    paid_at timestamp with time zone,
    payment_intent text,
    amount_paid_cents integer,
    amount_authorized_cents integer,
    authorized_at timestamp with time zone,
    authorization_expires_at timestamp with time zone,
    CONSTRAINT h2s_orders_amount_authorized_cents_check CHECK ((amount_authorized_cents >= 0)),
    CONSTRAINT h2s_orders_amount_paid_cents_check CHECK ((amount_paid_cents >= 0)),
    CONSTRAINT h2s_orders_status_check CHECK ((status = ANY (ARRAY['pending_payment'::text, 'paid'::text, 'expired'::text, 'cancelled'::text, 'refund_pending'::text, 'refunded'::text, 'refund_failed'::text, 'authorized'::text, 'authorization_expired'::text, 'partially_refunded'::text]))),
    CONSTRAINT h2s_orders_subtotal_cents_check CHECK ((subtotal_cents >= 0)),
    CONSTRAINT h2s_orders_total_cents_check CHECK ((total_cents >= 0))
);


--
-- Name: h2s_rate_counters; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_rate_counters (
    bucket text NOT NULL,
    window_start timestamp with time zone NOT NULL,
    hits integer NOT NULL,
    CONSTRAINT h2s_rate_counters_hits_check CHECK ((hits >= 0))
);


--
-- Name: h2s_recipients; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_recipients (
    recipient_id uuid DEFAULT gen_random_uuid() NOT NULL,
    email_normalized text NOT NULL,
    email text NOT NULL,
    name text NOT NULL,
    phone text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: h2s_refunds; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_refunds (
    refund_id uuid NOT NULL,
    checkout_id uuid NOT NULL,
    order_id text NOT NULL,
    attempt integer NOT NULL,
    cause text NOT NULL,
    reason text NOT NULL,
    note text,
    actor text NOT NULL,
    amount_cents integer NOT NULL,
    currency text NOT NULL,
    payment_intent text NOT NULL,
    idempotency_key text NOT NULL,
    stripe_refund_id text,
    status text DEFAULT 'requested'::text NOT NULL,
    failure_reason text,
    locked_until timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT h2s_refunds_amount_cents_check CHECK ((amount_cents > 0)),
    CONSTRAINT h2s_refunds_attempt_check CHECK ((attempt >= 1)),
    CONSTRAINT h2s_refunds_cause_check CHECK ((cause = ANY (ARRAY['cancel'::text, 'late_payment'::text, 'partial'::text]))),
    CONSTRAINT h2s_refunds_reason_check CHECK ((reason = ANY (ARRAY['requested_by_customer'::text, 'duplicate'::text, 'fraudulent'::text, 'other'::text, 'late_payment'::text]))),
    CONSTRAINT h2s_refunds_status_check CHECK ((status = ANY (ARRAY['requested'::text, 'pending'::text, 'requires_action'::text, 'succeeded'::text, 'failed'::text, 'canceled'::text])))
);


--
-- Name: h2s_request_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_request_keys (
    scope text NOT NULL,
    idempotency_key text NOT NULL,
    request_fingerprint text NOT NULL,
    order_id text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: h2s_service_area; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_service_area (
    singleton boolean DEFAULT true NOT NULL,
    version integer NOT NULL,
    areas jsonb NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_by text NOT NULL,
    CONSTRAINT h2s_service_area_areas_check CHECK ((jsonb_typeof(areas) = 'array'::text)),
    CONSTRAINT h2s_service_area_singleton_check CHECK (singleton),
    CONSTRAINT h2s_service_area_version_check CHECK ((version >= 1))
);


--
-- Name: h2s_service_catalog; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_service_catalog (
    sku text NOT NULL,
    name text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    unit_amount_cents integer NOT NULL,
    currency text DEFAULT 'usd'::text NOT NULL,
    max_quantity integer DEFAULT 10 NOT NULL,
    active boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    version integer DEFAULT 1 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT h2s_service_catalog_currency_check CHECK ((currency ~ '^[a-z]{3}$'::text)),
    CONSTRAINT h2s_service_catalog_description_check CHECK ((char_length(description) <= 2000)),
    CONSTRAINT h2s_service_catalog_max_quantity_check CHECK (((max_quantity >= 1) AND (max_quantity <= 100))),
    CONSTRAINT h2s_service_catalog_name_check CHECK (((char_length(name) >= 1) AND (char_length(name) <= 200))),
    CONSTRAINT h2s_service_catalog_sku_check CHECK ((sku ~ '^[a-z0-9][a-z0-9-]{1,63}$'::text)),
    CONSTRAINT h2s_service_catalog_unit_amount_cents_bound CHECK ((unit_amount_cents <= 99999999)),
    CONSTRAINT h2s_service_catalog_unit_amount_cents_check CHECK ((unit_amount_cents > 0)),
    CONSTRAINT h2s_service_catalog_version_check CHECK ((version >= 1))
);


--
-- Name: h2s_webhook_events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_webhook_events (
    event_id text NOT NULL,
    type text NOT NULL,
    session_id text,
    checkout_id uuid,
    result text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    payload jsonb NOT NULL
);


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version character varying NOT NULL
);


--
-- Name: h2s_admin_sessions h2s_admin_sessions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_admin_sessions
    ADD CONSTRAINT h2s_admin_sessions_pkey PRIMARY KEY (session_hash);


--
-- Name: h2s_api_keys h2s_api_keys_key_hash_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_api_keys
    ADD CONSTRAINT h2s_api_keys_key_hash_key UNIQUE (key_hash);


--
-- Name: h2s_api_keys h2s_api_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_api_keys
    ADD CONSTRAINT h2s_api_keys_pkey PRIMARY KEY (key_id);


--
-- Name: h2s_captures h2s_captures_idempotency_key_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_captures
    ADD CONSTRAINT h2s_captures_idempotency_key_key UNIQUE (idempotency_key);


--
-- Name: h2s_captures h2s_captures_order_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_captures
    ADD CONSTRAINT h2s_captures_order_id_key UNIQUE (order_id);


--
-- Name: h2s_captures h2s_captures_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_captures
    ADD CONSTRAINT h2s_captures_pkey PRIMARY KEY (capture_id);


--
-- Name: h2s_catalog_history h2s_catalog_history_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_catalog_history
    ADD CONSTRAINT h2s_catalog_history_pkey PRIMARY KEY (change_id);


--
-- Name: h2s_checkout_failures h2s_checkout_failures_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkout_failures
    ADD CONSTRAINT h2s_checkout_failures_pkey PRIMARY KEY (failure_id);


--
-- Name: h2s_checkout_traces h2s_checkout_traces_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkout_traces
    ADD CONSTRAINT h2s_checkout_traces_pkey PRIMARY KEY (seq);


--
-- Name: h2s_checkouts h2s_checkouts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkouts
    ADD CONSTRAINT h2s_checkouts_pkey PRIMARY KEY (checkout_id);


--
-- Name: h2s_checkouts h2s_checkouts_stripe_idempotency_key_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkouts
    ADD CONSTRAINT h2s_checkouts_stripe_idempotency_key_key UNIQUE (stripe_idempotency_key);


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_order_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_order_id_key UNIQUE (order_id);


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_pkey PRIMARY KEY (job_id);


--
-- Name: h2s_dispatch_sequences h2s_dispatch_sequences_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_sequences
    ADD CONSTRAINT h2s_dispatch_sequences_pkey PRIMARY KEY (sequence_id);


--
-- Name: h2s_dispatch_steps h2s_dispatch_steps_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_steps
    ADD CONSTRAINT h2s_dispatch_steps_pkey PRIMARY KEY (step_id);


--
-- Name: h2s_dispatch_steps h2s_dispatch_steps_sequence_id_position_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_steps
    ADD CONSTRAINT h2s_dispatch_steps_sequence_id_position_key UNIQUE (sequence_id, "position");


--
-- Name: h2s_event_attempts h2s_event_attempts_delivery_id_attempt_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_event_attempts
    ADD CONSTRAINT h2s_event_attempts_delivery_id_attempt_key UNIQUE (delivery_id, attempt);


--
-- Name: h2s_event_attempts h2s_event_attempts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_event_attempts
    ADD CONSTRAINT h2s_event_attempts_pkey PRIMARY KEY (attempt_id);


--
-- Name: h2s_event_deliveries h2s_event_deliveries_event_id_endpoint_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_event_deliveries
    ADD CONSTRAINT h2s_event_deliveries_event_id_endpoint_id_key UNIQUE (event_id, endpoint_id);


--
-- Name: h2s_event_deliveries h2s_event_deliveries_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_event_deliveries
    ADD CONSTRAINT h2s_event_deliveries_pkey PRIMARY KEY (delivery_id);


--
-- Name: h2s_event_endpoints h2s_event_endpoints_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_event_endpoints
    ADD CONSTRAINT h2s_event_endpoints_pkey PRIMARY KEY (endpoint_id);


--
-- Name: h2s_event_sequence_floors h2s_event_sequence_floors_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_event_sequence_floors
    ADD CONSTRAINT h2s_event_sequence_floors_pkey PRIMARY KEY (order_id);


--
-- Name: h2s_events h2s_events_order_id_sequence_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_events
    ADD CONSTRAINT h2s_events_order_id_sequence_key UNIQUE (order_id, sequence);


--
-- Name: h2s_events h2s_events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_events
    ADD CONSTRAINT h2s_events_pkey PRIMARY KEY (event_id);


--
-- Name: h2s_orders h2s_orders_checkout_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_orders
    ADD CONSTRAINT h2s_orders_checkout_id_key UNIQUE (checkout_id);


--
-- Name: h2s_orders h2s_orders_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_orders
    ADD CONSTRAINT h2s_orders_pkey PRIMARY KEY (order_id);


--
-- Name: h2s_orders h2s_orders_session_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_orders
    ADD CONSTRAINT h2s_orders_session_id_key UNIQUE (session_id);


--
-- Name: h2s_rate_counters h2s_rate_counters_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_rate_counters
    ADD CONSTRAINT h2s_rate_counters_pkey PRIMARY KEY (bucket, window_start);


--
-- Name: h2s_recipients h2s_recipients_email_normalized_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_recipients
    ADD CONSTRAINT h2s_recipients_email_normalized_key UNIQUE (email_normalized);


--
-- Name: h2s_recipients h2s_recipients_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_recipients
    ADD CONSTRAINT h2s_recipients_pkey PRIMARY KEY (recipient_id);


--
-- Name: h2s_refunds h2s_refunds_idempotency_key_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_refunds
    ADD CONSTRAINT h2s_refunds_idempotency_key_key UNIQUE (idempotency_key);


--
-- Name: h2s_refunds h2s_refunds_order_id_attempt_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_refunds
    ADD CONSTRAINT h2s_refunds_order_id_attempt_key UNIQUE (order_id, attempt);


--
-- Name: h2s_refunds h2s_refunds_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_refunds
    ADD CONSTRAINT h2s_refunds_pkey PRIMARY KEY (refund_id);


--
-- Name: h2s_refunds h2s_refunds_stripe_refund_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_refunds
    ADD CONSTRAINT h2s_refunds_stripe_refund_id_key UNIQUE (stripe_refund_id);


--
-- Name: h2s_request_keys h2s_request_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_request_keys
    ADD CONSTRAINT h2s_request_keys_pkey PRIMARY KEY (scope, idempotency_key);


--
-- Name: h2s_service_area h2s_service_area_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_service_area
    ADD CONSTRAINT h2s_service_area_pkey PRIMARY KEY (singleton);


--
-- Name: h2s_service_catalog h2s_service_catalog_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_service_catalog
    ADD CONSTRAINT h2s_service_catalog_pkey PRIMARY KEY (sku);


--
-- Name: h2s_webhook_events h2s_webhook_events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_webhook_events
    ADD CONSTRAINT h2s_webhook_events_pkey PRIMARY KEY (event_id);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: h2s_admin_sessions_expires; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_admin_sessions_expires ON public.h2s_admin_sessions USING btree (expires_at);


--
-- Name: h2s_admin_sessions_key; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_admin_sessions_key ON public.h2s_admin_sessions USING btree (key_hash);


--
-- Name: h2s_api_keys_active_name; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX h2s_api_keys_active_name ON public.h2s_api_keys USING btree (name) WHERE (revoked_at IS NULL);


--
-- Name: h2s_captures_open; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_captures_open ON public.h2s_captures USING btree (updated_at) WHERE (status = 'requested'::text);


--
-- Name: h2s_catalog_history_area; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_catalog_history_area ON public.h2s_catalog_history USING btree (change_id DESC) WHERE (subject = 'service_area'::text);


--
-- Name: h2s_catalog_history_item; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_catalog_history_item ON public.h2s_catalog_history USING btree (sku, change_id DESC) WHERE (subject = 'item'::text);


--
-- Name: h2s_checkout_failures_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkout_failures_at ON public.h2s_checkout_failures USING btree (at DESC);


--
-- Name: h2s_checkout_failures_checkout; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkout_failures_checkout ON public.h2s_checkout_failures USING btree (checkout_id);


--
-- Name: h2s_checkout_traces_checkout; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkout_traces_checkout ON public.h2s_checkout_traces USING btree (checkout_id, seq);


--
-- Name: h2s_checkouts_client_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX h2s_checkouts_client_key ON public.h2s_checkouts USING btree (idempotency_key) WHERE ((key_source = 'client'::text) AND (idempotency_key IS NOT NULL) AND (state <> 'cleaned'::text));


--
-- Name: h2s_checkouts_client_key_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkouts_client_key_created ON public.h2s_checkouts USING btree (created_at) WHERE ((key_source = 'client'::text) AND (idempotency_key IS NOT NULL));


--
-- Name: h2s_checkouts_derived_key; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkouts_derived_key ON public.h2s_checkouts USING btree (derived_key, created_at DESC);


--
-- Name: h2s_checkouts_needs_settlement; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkouts_needs_settlement ON public.h2s_checkouts USING btree (updated_at) WHERE needs_settlement;


--
-- Name: h2s_checkouts_open_sessions_expiry; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkouts_open_sessions_expiry ON public.h2s_checkouts USING btree (public.h2s_session_expires_at(session_request)) WHERE (state = 'session_created'::text);


--
-- Name: h2s_checkouts_order; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX h2s_checkouts_order ON public.h2s_checkouts USING btree (order_id);


--
-- Name: h2s_checkouts_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkouts_state ON public.h2s_checkouts USING btree (state, updated_at) WHERE (state <> ALL (ARRAY['session_created'::text, 'cleaned'::text]));


--
-- Name: h2s_dispatch_jobs_metadata_order; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_dispatch_jobs_metadata_order ON public.h2s_dispatch_jobs USING btree (((metadata ->> 'order_id'::text)));


--
-- Name: h2s_dispatch_jobs_recipient; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_dispatch_jobs_recipient ON public.h2s_dispatch_jobs USING btree (recipient_id, created_at DESC, job_id DESC);


--
-- Name: h2s_dispatch_jobs_status; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_dispatch_jobs_status ON public.h2s_dispatch_jobs USING btree (status, created_at DESC, job_id DESC);


--
-- Name: h2s_dispatch_sequences_one_default; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX h2s_dispatch_sequences_one_default ON public.h2s_dispatch_sequences USING btree (is_default) WHERE is_default;


--
-- Name: h2s_dispatch_steps_one_start; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX h2s_dispatch_steps_one_start ON public.h2s_dispatch_steps USING btree (sequence_id) WHERE is_start;


--
-- Name: h2s_event_deliveries_due; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_event_deliveries_due ON public.h2s_event_deliveries USING btree (next_attempt_at, created_at) WHERE (status = 'pending'::text);


--
-- Name: h2s_event_deliveries_endpoint; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_event_deliveries_endpoint ON public.h2s_event_deliveries USING btree (endpoint_id, created_at DESC);


--
-- Name: h2s_event_endpoints_enabled; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_event_endpoints_enabled ON public.h2s_event_endpoints USING btree (endpoint_id) WHERE (status = 'enabled'::text);


--
-- Name: h2s_events_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_events_created ON public.h2s_events USING btree (created_at);


--
-- Name: h2s_orders_authorized_by_expiry; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_orders_authorized_by_expiry ON public.h2s_orders USING btree (authorization_expires_at) WHERE (status = 'authorized'::text);


--
-- Name: h2s_orders_created_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_orders_created_at ON public.h2s_orders USING btree (created_at DESC);


--
-- Name: h2s_orders_payment_intent; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_orders_payment_intent ON public.h2s_orders USING btree (payment_intent) WHERE (payment_intent IS NOT NULL);


--
-- Name: h2s_orders_recipient; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_orders_recipient ON public.h2s_orders USING btree (recipient_id, created_at DESC);


--
-- Name: h2s_refunds_checkout; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_refunds_checkout ON public.h2s_refunds USING btree (checkout_id);


--
-- Name: h2s_refunds_open; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_refunds_open ON public.h2s_refunds USING btree (updated_at) WHERE (status = ANY (ARRAY['requested'::text, 'pending'::text, 'requires_action'::text]));


--
-- Name: h2s_refunds_payment_intent; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_refunds_payment_intent ON public.h2s_refunds USING btree (payment_intent);


--
-- Name: h2s_request_keys_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_request_keys_created ON public.h2s_request_keys USING btree (created_at);


--
-- Name: h2s_webhook_events_checkout; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_webhook_events_checkout ON public.h2s_webhook_events USING btree (checkout_id);


--
-- Name: h2s_webhook_events_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_webhook_events_received ON public.h2s_webhook_events USING btree (received_at DESC);


--
-- Name: h2s_event_deliveries h2s_event_deliveries_to_enabled_endpoint; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER h2s_event_deliveries_to_enabled_endpoint BEFORE INSERT ON public.h2s_event_deliveries FOR EACH ROW EXECUTE FUNCTION public.h2s_event_delivery_to_enabled_endpoint();


--
-- Name: h2s_captures h2s_captures_checkout_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_captures
    ADD CONSTRAINT h2s_captures_checkout_id_fkey FOREIGN KEY (checkout_id) REFERENCES public.h2s_checkouts(checkout_id);


--
-- Name: h2s_captures h2s_captures_job_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_captures
    ADD CONSTRAINT h2s_captures_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.h2s_dispatch_jobs(job_id);


--
-- Name: h2s_captures h2s_captures_order_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_captures
    ADD CONSTRAINT h2s_captures_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.h2s_orders(order_id);


--
-- Name: h2s_checkout_failures h2s_checkout_failures_checkout_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkout_failures
    ADD CONSTRAINT h2s_checkout_failures_checkout_id_fkey FOREIGN KEY (checkout_id) REFERENCES public.h2s_checkouts(checkout_id);


--
-- Name: h2s_checkout_traces h2s_checkout_traces_checkout_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkout_traces
    ADD CONSTRAINT h2s_checkout_traces_checkout_id_fkey FOREIGN KEY (checkout_id) REFERENCES public.h2s_checkouts(checkout_id);


--
-- Name: h2s_checkouts h2s_checkouts_job_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkouts
    ADD CONSTRAINT h2s_checkouts_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.h2s_dispatch_jobs(job_id) DEFERRABLE INITIALLY DEFERRED;


--
-- Name: h2s_checkouts h2s_checkouts_order_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkouts
    ADD CONSTRAINT h2s_checkouts_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.h2s_orders(order_id) DEFERRABLE INITIALLY DEFERRED;


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_order_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.h2s_orders(order_id);


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_recipient_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_recipient_id_fkey FOREIGN KEY (recipient_id) REFERENCES public.h2s_recipients(recipient_id);


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_sequence_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_sequence_id_fkey FOREIGN KEY (sequence_id) REFERENCES public.h2s_dispatch_sequences(sequence_id);


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_step_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_step_id_fkey FOREIGN KEY (step_id) REFERENCES public.h2s_dispatch_steps(step_id);


--
-- Name: h2s_dispatch_steps h2s_dispatch_steps_sequence_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_steps
    ADD CONSTRAINT h2s_dispatch_steps_sequence_id_fkey FOREIGN KEY (sequence_id) REFERENCES public.h2s_dispatch_sequences(sequence_id);


--
-- Name: h2s_event_attempts h2s_event_attempts_delivery_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_event_attempts
    ADD CONSTRAINT h2s_event_attempts_delivery_id_fkey FOREIGN KEY (delivery_id) REFERENCES public.h2s_event_deliveries(delivery_id) ON DELETE CASCADE;


--
-- Name: h2s_event_deliveries h2s_event_deliveries_endpoint_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_event_deliveries
    ADD CONSTRAINT h2s_event_deliveries_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES public.h2s_event_endpoints(endpoint_id);


--
-- Name: h2s_event_deliveries h2s_event_deliveries_event_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_event_deliveries
    ADD CONSTRAINT h2s_event_deliveries_event_id_fkey FOREIGN KEY (event_id) REFERENCES public.h2s_events(event_id) ON DELETE CASCADE;


--
-- Name: h2s_event_sequence_floors h2s_event_sequence_floors_order_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_event_sequence_floors
    ADD CONSTRAINT h2s_event_sequence_floors_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.h2s_orders(order_id);


--
-- Name: h2s_events h2s_events_order_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_events
    ADD CONSTRAINT h2s_events_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.h2s_orders(order_id);


--
-- Name: h2s_orders h2s_orders_checkout_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_orders
    ADD CONSTRAINT h2s_orders_checkout_id_fkey FOREIGN KEY (checkout_id) REFERENCES public.h2s_checkouts(checkout_id);


--
-- Name: h2s_orders h2s_orders_recipient_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_orders
    ADD CONSTRAINT h2s_orders_recipient_id_fkey FOREIGN KEY (recipient_id) REFERENCES public.h2s_recipients(recipient_id);


--
-- Name: h2s_refunds h2s_refunds_checkout_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_refunds
    ADD CONSTRAINT h2s_refunds_checkout_id_fkey FOREIGN KEY (checkout_id) REFERENCES public.h2s_checkouts(checkout_id);


--
-- Name: h2s_refunds h2s_refunds_order_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_refunds
    ADD CONSTRAINT h2s_refunds_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.h2s_orders(order_id);


--
-- Name: h2s_request_keys h2s_request_keys_order_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_request_keys
    ADD CONSTRAINT h2s_request_keys_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.h2s_orders(order_id);


--
-- Name: h2s_webhook_events h2s_webhook_events_checkout_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_webhook_events
    ADD CONSTRAINT h2s_webhook_events_checkout_id_fkey FOREIGN KEY (checkout_id) REFERENCES public.h2s_checkouts(checkout_id);


--
-- PostgreSQL database dump complete
--

\unrestrict dbmate


--
-- Dbmate schema migrations
--

INSERT INTO public.schema_migrations (version) VALUES
    ('20261126000001'),
    ('20261126000002'),
    ('20261126000003'),
    ('20261126000004'),
    ('20261127000001'),
    ('20261127000002'),
    ('20261127000003'),
    ('20261127000004'),
    ('20261127000005'),
    ('20261127000006'),
    ('20261127000007'),
    ('20261128000001'),
    ('20261128000002'),
    ('20261129000001'),
    ('20261129000002'),
    ('20261129000003'),
    ('20261130000001'),
    ('20261201000001'),
    ('20261202000001'),
    ('20261203000001'),
    ('20261204000001'),
    ('20261205000001'),
    ('20261206000200'),
    ('20261207000100'),
    ('20261207000101'),
    ('20261207000102'),
    ('20261207000200'),
    ('20261207000201'),
    ('20261207000202'),
    ('20261207000300'),
    ('20261207000400');
