-- migrate:up

-- OpenTelemetry's context of the statement that writes a row, joined to the row without a
-- parameter of its own: no server-side function's signature changes, and other functions
-- that write these rows (now or later) carry it too. A statement made inside a sampled
-- span sets the transaction-local h2s.traceparent (the W3C traceparent header's value)
-- through h2s_in_trace below, in one of its own arguments, so it is set before the
-- function it is an argument of runs; each row that function inserts takes the setting
-- in its column's DEFAULT. Unset (tracing off, or an unsampled request) the setting is
-- missing (NULL) or, once a transaction of this session has set it, '' again after that
-- transaction: both read as NULL. current_setting is stable, so adding the columns
-- rewrites neither table and the rows before them read NULL.
alter table h2s_checkout_traces
    add column otel_trace_id text
    default nullif(split_part(current_setting('h2s.traceparent', true), '-', 2), '');

-- The traceparent an outbound event is delivered with: the request or event that changed
-- the order, so that the subscriber's handling joins its trace.
alter table h2s_events
    add column traceparent text
    default nullif(current_setting('h2s.traceparent', true), '');

-- p_value unchanged, once h2s.traceparent is set for the rest of the transaction. Written
-- around an argument of the statement's function (h2s_begin_checkout(h2s_in_trace($13,
-- $1::text), ...)): PostgreSQL evaluates a function's arguments before it runs the
-- function, so every row the function writes sees the setting.
create function h2s_in_trace(p_traceparent text, p_value anyelement) returns anyelement
language plpgsql volatile as $$
begin
    perform set_config('h2s.traceparent', p_traceparent, true);
    return p_value;
end
$$;

-- migrate:down
drop function h2s_in_trace(text, anyelement);
alter table h2s_events drop column traceparent;
alter table h2s_checkout_traces drop column otel_trace_id;
