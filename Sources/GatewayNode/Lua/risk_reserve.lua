-- Takes one order's place under its buyer's risk limits (contract 4.6), or says which
-- limit is full and in how many ms a place frees. Needs lib_publish (nowMs: the Redis
-- clock, so every node counts on one clock).
-- KEYS[1]: the buyer's unpaid orders (zset order id -> when its place lapses, ms)
-- KEYS[2]: the buyer's gift and friend-pay orders (zset order id -> created, ms)
-- ARGV[1]: the order id
-- ARGV[2]: most unpaid orders, 0: not counted
-- ARGV[3]: how long the place is held should no release come (the pay window, ms)
-- ARGV[4]: most gift and friend-pay orders in the window, 0: not counted
-- ARGV[5]: the window (ms)
-- Returns {0, 0} when taken; {1, retry ms} unpaid orders full; {2, retry ms} the window full.
local PENDING, REQUESTS = KEYS[1], KEYS[2]
local ORDER = ARGV[1]
local MAX_PENDING, HOLD = tonumber(ARGV[2]), tonumber(ARGV[3])
local MAX_REQUESTS, WINDOW = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = tonumber(nowMs())

-- The smallest score of a zset (its first member's).
local function firstScore(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tonumber(first[2])
end

-- Both limits are checked before either is written: a refusal takes nothing.
if MAX_PENDING > 0 then
  -- Places whose release was lost (a node died after the order left pending) lapse.
  redis.call('ZREMRANGEBYSCORE', PENDING, '-inf', string.format('%d', now))
  if redis.call('ZCARD', PENDING) >= MAX_PENDING then
    return {1, firstScore(PENDING) - now}
  end
end
if MAX_REQUESTS > 0 then
  redis.call('ZREMRANGEBYSCORE', REQUESTS, '-inf', string.format('%d', now - WINDOW))
  if redis.call('ZCARD', REQUESTS) >= MAX_REQUESTS then
    return {2, firstScore(REQUESTS) + WINDOW - now}
  end
end
if MAX_PENDING > 0 then
  redis.call('ZADD', PENDING, string.format('%d', now + HOLD), ORDER)
  -- The set lives as long as its longest place.
  local last = redis.call('ZRANGE', PENDING, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', PENDING, math.max(1, tonumber(last[2]) - now))
end
if MAX_REQUESTS > 0 then
  redis.call('ZADD', REQUESTS, string.format('%d', now), ORDER)
  redis.call('PEXPIRE', REQUESTS, WINDOW)
end
return {0, 0}
