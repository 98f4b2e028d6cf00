-- migrate:up

-- Trace rows written in the order they are given. One INSERT over rows produced in array
-- order takes its identity values in that order, so seq increases with the order in which
-- a checkout's steps happened, also for rows written by one statement (several inserts in
-- one statement's CTEs took theirs in reverse). The timeline is ordered by seq.
--
-- Each element: {"kind": "step"|"transition", "event", "from_state", "to_state", "at",
-- "duration_ms", "detail"}; kind defaults to step, detail to {}.
create function h2s_write_trace_rows(p_checkout_id uuid, p_rows jsonb) returns integer
language sql as $$
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

-- migrate:down
drop function h2s_write_trace_rows(uuid, jsonb);
