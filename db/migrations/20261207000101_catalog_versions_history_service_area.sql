-- migrate:up

-- The shop manages its own catalog (issue 25). Each item carries a version, one more at
-- every change: a worker prices a cart from its cached items and h2s_begin_checkout
-- checks their versions in the statement that writes the order, so the price charged is
-- the price current when phase 1 commits (20261207000102). No item is deleted: orders
-- keep pointing at it, and a deactivated one can come back.
alter table h2s_service_catalog
    add column version integer not null default 1 check (version >= 1),
    add column updated_at timestamptz not null default now(),
    -- Stripe's largest amount for a two-decimal currency is 99,999,999 minor units.
    add constraint h2s_service_catalog_unit_amount_cents_bound
        check (unit_amount_cents <= 99999999),
    add constraint h2s_service_catalog_name_check check (char_length(name) between 1 and 200),
    add constraint h2s_service_catalog_description_check check (char_length(description) <= 2000);

-- The postal codes served: one row or none (none: everywhere, version 0). areas is
-- [{"country": "US", "postal_code_prefixes": ["787", "78613"]}]; an empty list is
-- everywhere too.
create table h2s_service_area (
    singleton boolean primary key default true check (singleton),
    version integer not null check (version >= 1),
    areas jsonb not null check (jsonb_typeof(areas) = 'array'),
    updated_at timestamptz not null default now(),
    updated_by text not null
);

-- Every change of an item or of the service area, written in the change's transaction:
-- who (actor, as in the trace rows), when, and the fields before and after.
create table h2s_catalog_history (
    change_id bigint generated always as identity primary key,
    subject text not null check (subject in ('item', 'service_area')),
    sku text,
    version integer not null,
    action text not null check (action in ('created', 'updated', 'deactivated',
                                           'reactivated')),
    actor text not null,
    at timestamptz not null default now(),
    before jsonb,
    after jsonb not null,
    check ((subject = 'item') = (sku is not null))
);
create index h2s_catalog_history_item on h2s_catalog_history (sku, change_id desc)
    where subject = 'item';
create index h2s_catalog_history_area on h2s_catalog_history (change_id desc)
    where subject = 'service_area';

-- Catalog events from the same outbox: they are about no order, so an event's order and
-- checkout may be null; their sequence is the item's (or the area's) version.
alter table h2s_events alter column order_id drop not null;
alter table h2s_events alter column checkout_id drop not null;
alter table h2s_events drop constraint h2s_events_type_check;
alter table h2s_events add constraint h2s_events_type_check check (type in (
    'order.created', 'order.paid', 'order.expired', 'order.cancelled',
    'order.refund_pending', 'order.refunded', 'order.refund_failed',
    'catalog.item_created', 'catalog.item_updated', 'service_area.updated'));
alter table h2s_events add constraint h2s_events_subject_check
    check ((order_id is null) = (type in ('catalog.item_created', 'catalog.item_updated',
                                          'service_area.updated')));

-- Emit one catalog event, inside the caller's transaction, to every endpoint enabled now
-- whose event_types match (h2s_enqueue_order_event's rules: nobody listening writes
-- nothing and answers null; NOTIFY only by the holder of (7233, 1)). p_data is the
-- event's data: {"item": {...}} or {"service_area": {...}}; p_sequence the subject's
-- version, so a receiver can drop an older event that arrives after a newer one.
create function h2s_enqueue_catalog_event(p_type text, p_data jsonb, p_sequence integer)
returns text
language plpgsql as $$
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

-- migrate:down
drop function h2s_enqueue_catalog_event(text, jsonb, integer);
delete from h2s_events where order_id is null;
alter table h2s_events drop constraint h2s_events_subject_check;
alter table h2s_events drop constraint h2s_events_type_check;
alter table h2s_events add constraint h2s_events_type_check check (type in (
    'order.created', 'order.paid', 'order.expired', 'order.cancelled',
    'order.refund_pending', 'order.refunded', 'order.refund_failed'));
alter table h2s_events alter column checkout_id set not null;
alter table h2s_events alter column order_id set not null;
drop table h2s_catalog_history;
drop table h2s_service_area;
alter table h2s_service_catalog
    drop constraint h2s_service_catalog_description_check,
    drop constraint h2s_service_catalog_name_check,
    drop constraint h2s_service_catalog_unit_amount_cents_bound,
    drop column updated_at,
    drop column version;
