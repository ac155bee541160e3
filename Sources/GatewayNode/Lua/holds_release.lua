-- Ends the product's restock holds due by NOW (contract 4.6): each held key goes back to
-- the end of the stock, as return_keys does. At most MAX per call.
-- KEYS[1]: holds hash  2: holds due zset  3: stock list
-- ARGV[1]: now (ms)  ARGV[2]: max holds
-- Returns {released, more 0|1 (MAX reached), next due (ms) or 0 when none is left}.
local HOLDS, DUE, STOCK = KEYS[1], KEYS[2], KEYS[3]
local NOW, MAX = ARGV[1], tonumber(ARGV[2])

local users = redis.call('ZRANGEBYSCORE', DUE, '-inf', NOW, 'LIMIT', 0, MAX)
for _, u in ipairs(users) do
  local id = string.match(redis.call('HGET', HOLDS, u) or '', '^([^|]+)|')
  if id then redis.call('RPUSH', STOCK, id) end
  redis.call('HDEL', HOLDS, u)
  redis.call('ZREM', DUE, u)
end
local nxt = redis.call('ZRANGE', DUE, 0, 0, 'WITHSCORES')
return {#users, #users == MAX and 1 or 0, tonumber(nxt[2]) or 0}
