-- migrate:up

-- Replays in one round trip for several requests. A worker that expects a replay
-- (flows/replay_batch.py) does not send its own call while another replay call is on its
-- way: the requests that arrive meanwhile go together in the next one, each as the call
-- h2s_begin_checkout makes without a new checkout (20261202000001). Each element is
-- decided exactly as alone (replayed with its trace row, key_reused, or absent, which
-- writes nothing); the rows come back in the order of the arrays (ord, from 1). All of one
-- call commit together: a replay's trace row is as durable as before, with one commit for
-- the lot.
create function h2s_replay_checkouts(
    p_key_sources text[],
    p_idempotency_keys text[],
    p_derived_keys text[],
    p_request_fingerprints text[],
    p_window_starts timestamptz[],
    p_nows timestamptz[]
) returns table (
    ord bigint,
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
language sql as $$
    select u.ord, b.*
    from unnest(p_key_sources, p_idempotency_keys, p_derived_keys, p_request_fingerprints,
                p_window_starts, p_nows)
         with ordinality as u(key_source, idempotency_key, derived_key, request_fingerprint,
                              window_start, now_, ord)
    cross join lateral h2s_begin_checkout(
        u.key_source, u.idempotency_key, u.derived_key, u.request_fingerprint,
        u.window_start, u.now_, u.now_, null, null, null) as b
    order by u.ord
$$;

-- migrate:down
drop function h2s_replay_checkouts(text[], text[], text[], text[], timestamptz[], timestamptz[]);
