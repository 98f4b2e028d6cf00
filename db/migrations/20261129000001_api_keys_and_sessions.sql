-- migrate:up

-- API keys with scopes. The key itself is shown once, at creation, and never stored: only
-- its SHA-256 (a key is 32 random bytes, so a fast hash is enough; see flows/api_keys.py).
-- A revoked key keeps its row, so the names in traces and logs stay explained.
create table h2s_api_keys (
    key_id uuid primary key,
    name text not null,
    scopes text[] not null
        check (cardinality(scopes) > 0 and scopes <@ array['read', 'operate', 'admin']),
    key_hash bytea not null unique,
    -- The key's first characters ("h2s_key_" and four more), to recognise it in a list.
    key_hint text not null,
    created_at timestamptz not null,
    created_by text not null,
    expires_at timestamptz,
    revoked_at timestamptz,
    revoked_by text,
    -- Written at most once a minute per key, by the lookup that refreshes a replica's cache.
    last_used_at timestamptz
);
-- A name says who acted in traces and logs: unique among keys still in force.
create unique index h2s_api_keys_active_name on h2s_api_keys (name) where revoked_at is null;

-- The debug page's sign-in sessions (Litestar's server-side sessions, api/sessions.py),
-- here so that every replica knows them. The cookie holds a random id; only its SHA-256
-- is kept, with the hash of the key that signed in, so revoking a key ends its sessions.
create table h2s_admin_sessions (
    session_hash bytea primary key,
    key_hash bytea,
    data bytea not null,
    created_at timestamptz not null,
    expires_at timestamptz not null
);
create index h2s_admin_sessions_key on h2s_admin_sessions (key_hash);
create index h2s_admin_sessions_expires on h2s_admin_sessions (expires_at);

-- migrate:down
drop table h2s_admin_sessions;
drop table h2s_api_keys;
