-- migrate:up

-- A delivery is written only for an endpoint that is enabled when its row is locked
-- (issue 29). h2s_enqueue_order_event picks its endpoints with a plain select, so a
-- disable committed after that select, but before the event's transaction commits,
-- cancelled the pending deliveries it could see and missed this one: pending for ever for
-- a disabled endpoint, and its event kept past retention for ever.
--
-- FOR SHARE conflicts with the update that disables or deletes an endpoint (the foreign
-- key's FOR KEY SHARE does not): a disable waits for every event transaction that holds
-- the endpoint this way, and cancels what they wrote in its next statement
-- (store/outbox.py _CANCEL_PENDING, a statement of its own so that it sees them); an event
-- written while a disable is in progress waits for it, sees the endpoint disabled, and
-- writes no delivery for it. A trigger rather than a change to h2s_enqueue_order_event:
-- every writer of deliveries goes through it, and the function stays one migration's.
create function h2s_event_delivery_to_enabled_endpoint() returns trigger
language plpgsql as $$
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

create trigger h2s_event_deliveries_to_enabled_endpoint
before insert on h2s_event_deliveries
for each row execute function h2s_event_delivery_to_enabled_endpoint();

-- migrate:down
drop trigger h2s_event_deliveries_to_enabled_endpoint on h2s_event_deliveries;
drop function h2s_event_delivery_to_enabled_endpoint();
