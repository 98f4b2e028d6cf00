-- migrate:up

-- The reconciler asks Stripe about sessions past their expiry (store/reconcile.py), and the
-- doctor counts them (store/doctor.py). Both filtered `session_created` checkouts on
-- (session_request->>'expires_at')::timestamptz, which no index held: walking the open
-- sessions by updated_at, each query read every open session's row to find the few past
-- expiry, however few there were. With an hour of busy sales open (the bench: 60,000 at
-- once) a reconciler pass cost PostgreSQL about 150 ms of CPU every 30 s.
--
-- The cast of text to timestamptz is only stable (a string without an offset reads in the
-- session's TimeZone), so it cannot be indexed as such. Every writer of session_request
-- stores expires_at with its offset (Python's isoformat of an aware datetime, jsonb of a
-- timestamptz), which reads the same in any TimeZone: this function says so.
create function h2s_session_expires_at(p_session_request jsonb) returns timestamptz
language sql immutable strict parallel safe
return (p_session_request ->> 'expires_at')::timestamptz;

-- Only open sessions are indexed, by expiry, in place of the index by updated_at that those
-- two queries alone read: phase 3 still adds one index entry when it moves a checkout to
-- session_created, no more.
create index h2s_checkouts_open_sessions_expiry
    on h2s_checkouts (h2s_session_expires_at(session_request))
    where state = 'session_created';
drop index h2s_checkouts_open_sessions;

-- migrate:down
create index h2s_checkouts_open_sessions on h2s_checkouts (updated_at)
    where state = 'session_created';
drop index h2s_checkouts_open_sessions_expiry;
drop function h2s_session_expires_at(jsonb);
