-- migrate:up

-- Phase 3 of a checkout in one round trip (flows/begin_checkout.py), and the early link
-- of a webhook that beat it (flows/settle.py): the state change decided by the state
-- machine, guarded by the state it leaves; the session and the job id onto the order
-- (the seed's known issue 1); the stored answer every retry replays; the order.created
-- event (h2s_enqueue_order_event, in the same statement); the trace rows.
--
-- When the checkout is no longer in p_from_state nothing is written and the row says
-- where it is, with its stored answer: a webhook for this session linked it first, and
-- its answer is this request's answer.
--
-- p_trace: the steps before the transition, then the transition row, in order.
create or replace function h2s_link_session(
    p_checkout_id uuid,
    p_from_state text,
    p_to_state text,
    p_at timestamptz,
    p_session_id text,
    p_job_id uuid,
    p_response jsonb,
    p_trace jsonb
) returns table (linked boolean, state text, response_status integer, response_json text)
language plpgsql as $$
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

-- migrate:down
-- Phase 3 as it was before it emitted order.created.
create or replace function h2s_link_session(
    p_checkout_id uuid,
    p_from_state text,
    p_to_state text,
    p_at timestamptz,
    p_session_id text,
    p_job_id uuid,
    p_response jsonb,
    p_trace jsonb
) returns table (linked boolean, state text, response_status integer, response_json text)
language plpgsql as $$
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
    perform h2s_write_trace_rows(p_checkout_id, p_trace);
    return query select true, p_to_state, 201, null::text;
end
$$;
