-- A user's watch on a product: the product's side (its slot). The user's own list of
-- watched products is kept apart (user_watches.lua, the user's slot).
-- RECORD is the watch record (CommunityCore `Watch.record`, its one owner) with '$PRICE'
-- where the baseline goes: the price is read here, atomically with the write.
-- Watches end TTL after they were set: WATCH_EXP (user by expiry) lets each new watch drop
-- up to 100 ended ones of the product, and every watch key of the product lives as long as
-- its newest watch. RESTOCK '1' puts the user in the restock LINE (score: its place, the
-- last place + 1), keeping a place already taken; a watch without it leaves the line.
-- Returns {price, ended user, ...}, or {-1} without the product.
local INFO, WATCHERS, WATCH, WATCH_EXP, LINE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local USER, BELOW, RECORD, NOW, TTL, RESTOCK = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]

local price = redis.call('HGET', INFO, 'price')
if not price then return {-1} end
local res = {tonumber(price)}
local ended = redis.call('ZRANGEBYSCORE', WATCH_EXP, '-inf', NOW, 'LIMIT', 0, 100)
for _, u in ipairs(ended) do
  redis.call('ZREM', WATCHERS, u)
  redis.call('HDEL', WATCH, u)
  redis.call('ZREM', WATCH_EXP, u)
  redis.call('ZREM', LINE, u)
  res[#res + 1] = u
end
local threshold = BELOW ~= '' and BELOW or price
local record = string.gsub(RECORD, '%$PRICE', price)
redis.call('ZADD', WATCHERS, threshold, USER)
redis.call('HSET', WATCH, USER, record)
redis.call('ZADD', WATCH_EXP, NOW + TTL, USER)
if RESTOCK == '1' then
  if not redis.call('ZSCORE', LINE, USER) then
    local last = redis.call('ZRANGE', LINE, -1, -1, 'WITHSCORES')
    redis.call('ZADD', LINE, (tonumber(last[2]) or 0) + 1, USER)
  end
else
  redis.call('ZREM', LINE, USER)
end
-- A line that does not exist is not made to: PEXPIRE of a missing key does nothing.
for _, k in ipairs({WATCHERS, WATCH, WATCH_EXP, LINE}) do
  if redis.call('PTTL', k) < TTL then redis.call('PEXPIRE', k, TTL) end
end
return res
