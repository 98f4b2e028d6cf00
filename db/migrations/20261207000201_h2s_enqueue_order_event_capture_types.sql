-- migrate:up
-- The events of pay-on-completion and partial refunds (issue 26): order.authorized (the
-- card is held, the job dispatchable), job.completed, order.captured,
-- order.refunded_partially and order.authorization_expired, from the same outbox.
alter table h2s_events drop constraint h2s_events_type_check;
alter table h2s_events add constraint h2s_events_type_check check (type in (
    'order.created', 'order.paid', 'order.expired', 'order.cancelled', 'order.refund_pending',
    'order.refunded', 'order.refund_failed', 'order.authorized', 'job.completed',
    'order.captured', 'order.refunded_partially', 'order.authorization_expired',
    'catalog.item_created', 'catalog.item_updated', 'service_area.updated'));

create or replace function h2s_enqueue_order_event(p_order_id text, p_type text) returns text
language plpgsql as $$
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

-- migrate:down
alter table h2s_events drop constraint h2s_events_type_check;
alter table h2s_events add constraint h2s_events_type_check check (type in (
    'order.created', 'order.paid', 'order.expired', 'order.cancelled', 'order.refund_pending',
    'order.refunded', 'order.refund_failed',
    'catalog.item_created', 'catalog.item_updated', 'service_area.updated'));

create or replace function h2s_enqueue_order_event(p_order_id text, p_type text) returns text
language plpgsql as $$
declare
    v_event_id text := 'evt_' || replace(gen_random_uuid()::text, '-', '');
    v_at timestamptz := clock_timestamp();
    v_endpoints text[];
    v_order h2s_orders;
    v_sequence integer;
begin
    if p_type not in ('order.created', 'order.paid', 'order.expired', 'order.cancelled',
                      'order.refund_pending', 'order.refunded', 'order.refund_failed') then
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
