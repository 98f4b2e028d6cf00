-- migrate:up

-- Fixed-window counters shared by every replica: new checkouts per client address and per
-- email (one-minute windows, counted inside h2s_begin_checkout), failed sign-ins per
-- client address (15-minute windows). A bucket names what is counted ("address:…",
-- "email:<sha256>", "sign-in:…"); no address or email is kept in the clear but the
-- address. Rows of past windows are deleted by the reaper every 15 minutes, a scan of an
-- hour's rows: no index on window_start, which every new checkout would have to update.
create table h2s_rate_counters (
    bucket text not null,
    window_start timestamptz not null,
    hits integer not null check (hits >= 0),
    primary key (bucket, window_start)
);

-- migrate:down
drop table h2s_rate_counters;
