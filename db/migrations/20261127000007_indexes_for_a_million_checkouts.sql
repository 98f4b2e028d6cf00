-- migrate:up

-- What reads need once a shop has a million checkouts stored (`just bench --prefill`,
-- docs/benchmarks.md). Each index costs every new checkout one more index entry in the
-- statement that writes the row (no round trip); the bench's new-checkout rate with and
-- without a million rows stored is the measure of that cost.

-- A checkout by its order id (the order's timeline, a cancel, the customer's return page):
-- a scan of every checkout without it (313 ms at 300,000). One per order.
create unique index h2s_checkouts_order on h2s_checkouts (order_id);

-- The portal pages by status newest first with (created_at, job_id) as the keyset: with
-- job_id in the index the page's order and its cursor come straight from it.
drop index h2s_dispatch_jobs_status;
create index h2s_dispatch_jobs_status
    on h2s_dispatch_jobs (status, created_at desc, job_id desc);
drop index h2s_dispatch_jobs_recipient;
create index h2s_dispatch_jobs_recipient
    on h2s_dispatch_jobs (recipient_id, created_at desc, job_id desc);

-- The seed's own verification query (doctor's orders_without_jobs_by_metadata) joins jobs
-- on metadata->>'order_id': without this it reads every job.
create index h2s_dispatch_jobs_metadata_order on h2s_dispatch_jobs ((metadata ->> 'order_id'));

-- migrate:down
drop index h2s_dispatch_jobs_metadata_order;
drop index h2s_dispatch_jobs_recipient;
create index h2s_dispatch_jobs_recipient on h2s_dispatch_jobs (recipient_id, created_at desc);
drop index h2s_dispatch_jobs_status;
create index h2s_dispatch_jobs_status on h2s_dispatch_jobs (status, created_at desc);
drop index h2s_checkouts_order;
