-- migrate:up

-- A booking that ended without being kept (cancelled, refunded or on its way to it, a
-- delayed payment that failed) no longer holds the customer's next attempt at the same
-- booking, as an expired or cleaned one did not: within the five-minute window the same
-- email, cart and address is a new checkout. A client Idempotency-Key still replays its
-- answer until it is forgotten, as before.
create or replace function h2s_find_claimed_checkout(
    p_key_source text, p_idempotency_key text, p_derived_key text, p_window_start timestamptz
) returns h2s_checkouts
language sql stable as $$
    select c.* from h2s_checkouts c
    where p_key_source = 'client'
      and c.key_source = 'client' and c.idempotency_key = p_idempotency_key
      and c.state <> 'cleaned'
    union all
    (select c.* from h2s_checkouts c
     where p_key_source = 'derived'
       and c.derived_key = p_derived_key
       and c.state not in ('cleaned', 'expired', 'payment_failed', 'cancelled',
                           'refund_pending', 'refunded', 'refund_failed')
       and c.created_at > p_window_start
     order by c.created_at desc
     limit 1)
    limit 1
$$;

-- migrate:down
create or replace function h2s_find_claimed_checkout(
    p_key_source text, p_idempotency_key text, p_derived_key text, p_window_start timestamptz
) returns h2s_checkouts
language sql stable as $$
    select c.* from h2s_checkouts c
    where p_key_source = 'client'
      and c.key_source = 'client' and c.idempotency_key = p_idempotency_key
      and c.state <> 'cleaned'
    union all
    (select c.* from h2s_checkouts c
     where p_key_source = 'derived'
       and c.derived_key = p_derived_key and c.state not in ('cleaned', 'expired')
       and c.created_at > p_window_start
     order by c.created_at desc
     limit 1)
    limit 1
$$;
