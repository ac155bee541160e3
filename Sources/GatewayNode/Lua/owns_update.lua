-- Who owns what (also-bought, contract 4.6), in the user's slot: records that the user now
-- owns (or no longer owns) a product, and answers whether that changed anything. A repeat
-- (the same delivery seen twice, a refund of one of two orders) changes nothing, so the
-- counts it feeds are moved once per transition.
-- KEYS[1]: the user's owned products (zset product -> first delivery, ms)
-- ARGV[1]: the product; ARGV[2]: '1' owns it now, '0' not; ARGV[3]: now (ms); ARGV[4]: most
-- other products answered (the most recently bought first)
-- Returns {0} when nothing changed, else {1, other product, ...}.
local OWNS = KEYS[1]
local PRODUCT, OWNED, NOW, MOST = ARGV[1], ARGV[2] == '1', ARGV[3], tonumber(ARGV[4])
local changed
if OWNED then
  changed = redis.call('ZADD', OWNS, 'NX', NOW, PRODUCT)
else
  changed = redis.call('ZREM', OWNS, PRODUCT)
end
if changed == 0 then return {0} end
local reply = {1}
for _, other in ipairs(redis.call('ZREVRANGE', OWNS, 0, MOST)) do
  if other ~= PRODUCT and #reply <= MOST then reply[#reply + 1] = other end
end
return reply
