-- v1 upgrade (LegacyCommerceMigration): a v1 gift or pay code holds the order's id; the
-- load script follows the order's key. Compare-and-set, keeping the code's TTL, so a
-- rerun (or a second node) changes nothing.
-- KEYS[1]: the code (v1 name)
-- ARGV[1]: the order id it must still hold; ARGV[2]: the order's key
-- Returns 1 when rewritten, 0 otherwise.
local CODE = KEYS[1]
local ORDER_ID, ORDER_KEY = ARGV[1], ARGV[2]
if redis.call('GET', CODE) ~= ORDER_ID then return 0 end
redis.call('SET', CODE, ORDER_KEY, 'KEEPTTL')
return 1
