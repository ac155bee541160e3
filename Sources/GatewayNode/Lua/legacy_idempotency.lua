-- v1 upgrade (LegacyCommerceMigration): writes the idempotency key of today's name (per
-- scope, buyer, product) beside v1's (per buyer, scoped key), holding the order's key, with
-- the remaining TTL of v1's. NX: a key already there (a rerun, a second node) is kept.
-- KEYS[1]: v1's key (value: the order id); KEYS[2]: today's key
-- ARGV[1]: the order id v1's key must still hold; ARGV[2]: the order's key
-- Returns 1 when written, 0 otherwise.
local OLD, NEW = KEYS[1], KEYS[2]
local ORDER_ID, ORDER_KEY = ARGV[1], ARGV[2]
if redis.call('GET', OLD) ~= ORDER_ID then return 0 end
local ttl = redis.call('PTTL', OLD)
if ttl > 0 then
  return redis.call('SET', NEW, ORDER_KEY, 'PX', ttl, 'NX') and 1 or 0
elseif ttl == -1 then
  return redis.call('SET', NEW, ORDER_KEY, 'NX') and 1 or 0
end
return 0
