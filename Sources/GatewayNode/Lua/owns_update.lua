-- Who owns what (also-bought, contract 4.6), in the user's slot: records that the user now
-- owns (or no longer owns) a product, and answers whether that changed anything. A repeat
-- (the same delivery seen twice, a refund of one of two orders) changes nothing, so the
-- counts it feeds are moved once per transition.
-- What else the same decision does in the user's slot rides along (one round trip per
-- delivered order, not three): the risk places of orders that left pending_payment are
-- given back whatever ownership did, and on one server a first ownership arms the user's
-- dormancy timer (gw:timers, its own slot on a cluster, where the node ZADDs it after).
-- KEYS[1]: the user's owned products (zset product -> first delivery, ms)
-- KEYS[2]: optional, the user's unpaid orders (risk_reserve's zset); KEYS[3]: optional, gw:timers
-- ARGV[1]: the product; ARGV[2]: '1' owns it now, '0' not; ARGV[3]: now (ms); ARGV[4]: most
-- other products answered (the most recently bought first); ARGV[5]: orders whose risk place
-- is freed (space-separated, '' none); ARGV[6], ARGV[7]: the dormancy timer's member and due
-- (ms), with KEYS[3]
-- Returns {0} when nothing changed, else {1, other product, ...}.
local OWNS, PENDING, TIMERS = KEYS[1], KEYS[2], KEYS[3]
local PRODUCT, OWNED, NOW, MOST = ARGV[1], ARGV[2] == '1', ARGV[3], tonumber(ARGV[4])
local RELEASE, TIMER, DUE = ARGV[5] or '', ARGV[6], ARGV[7]
if PENDING then
  for order in string.gmatch(RELEASE, '%S+') do redis.call('ZREM', PENDING, order) end
end
local changed
if OWNED then
  changed = redis.call('ZADD', OWNS, 'NX', NOW, PRODUCT)
else
  changed = redis.call('ZREM', OWNS, PRODUCT)
end
if changed == 0 then return {0} end
if TIMERS and OWNED then redis.call('ZADD', TIMERS, 'NX', DUE, TIMER) end
local reply = {1}
for _, other in ipairs(redis.call('ZREVRANGE', OWNS, 0, MOST)) do
  if other ~= PRODUCT and #reply <= MOST then reply[#reply + 1] = other end
end
return reply
