-- A product with its counts: {fields, stock, buyers, watchers, held}; fields is empty without it.
-- held: restock holds not yet used or released (their keys are out of the stock).
local INFO, STOCK, MEMBERS, WATCHERS, HOLDS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

return {redis.call('HGETALL', INFO), redis.call('LLEN', STOCK), redis.call('HLEN', MEMBERS), redis.call('ZCARD', WATCHERS),
  redis.call('HLEN', HOLDS)}
