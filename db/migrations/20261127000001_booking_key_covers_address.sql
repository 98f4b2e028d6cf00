-- migrate:up

-- The derived key now covers the service address as well as the email and the cart
-- (domain/keys.py derived_key): the same cart booked at a second address within five
-- minutes is a second booking, not a replay of the first.
--
-- A key is only ever looked up within five minutes of its checkout's created_at, so only
-- checkouts younger than that can still be found by a retry. Those are re-keyed here with
-- the new formula, computed in SQL exactly as domain/keys.py and domain/cart.py do it
-- (a test in tests/store holds the two together), so a retry of a request sent just
-- before the upgrade still replays its checkout. Older rows keep their old key: no lookup
-- can reach them any more. The hour below is a margin over the five minutes.
with rekeyed as (
    select c.checkout_id,
           encode(sha256(convert_to(
               lower(regexp_replace(c.request_body->'customer'->>'email', '^\s+|\s+$', '', 'g'))
               || '|' || cart.fingerprint
               || '|' || addr.normalized, 'UTF8')), 'hex') as derived_key
    from h2s_checkouts c
    cross join lateral (
        select encode(sha256(convert_to(
                   string_agg(line.sku || 'x' || line.quantity, ';' order by line.sku collate "C"),
                   'UTF8')), 'hex') as fingerprint
        from (
            select item->>'sku' as sku, sum((item->>'quantity')::int) as quantity
            from jsonb_array_elements(c.request_body->'items') as item
            group by 1
        ) as line
    ) as cart
    cross join lateral (
        select string_agg(
                   lower(regexp_replace(
                       regexp_replace(coalesce(c.request_body->'customer'->'address'->>f.name, ''),
                                      '^\s+|\s+$', '', 'g'),
                       '\s+', ' ', 'g')),
                   E'\n' order by f.position) as normalized
        from unnest(array['line1', 'line2', 'city', 'state', 'postal_code', 'country'])
             with ordinality as f(name, position)
    ) as addr
    where c.created_at > now() - interval '1 hour'
)
update h2s_checkouts c set derived_key = r.derived_key
from rekeyed r where c.checkout_id = r.checkout_id;

-- migrate:down
-- Nothing to undo in the schema: keys written since keep the address in them, and the old
-- code looks them up by email and cart only, so a retry within five minutes of the
-- downgrade may start a second checkout.
select 1;
