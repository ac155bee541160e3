-- A product with its counts: {fields, stock, buyers, watchers}; fields is empty without it.
local INFO, STOCK, MEMBERS, WATCHERS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

return {redis.call('HGETALL', INFO), redis.call('LLEN', STOCK), redis.call('HLEN', MEMBERS), redis.call('ZCARD', WATCHERS)}
