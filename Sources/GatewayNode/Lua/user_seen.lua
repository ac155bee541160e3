-- A user's connection opened or closed on a node instance (dormant buyers, contract 4.6),
-- in the user's slot; with lib_publish (nowMs: every node on the Redis clock).
-- KEYS[1]: the user's seen hash: last_seen (ms), conn:<instance> (open connections there),
--          dormant_for (the spell an event was written for), armed (a dorm: timer exists)
-- ARGV[1]: 'open' or 'close'; ARGV[2]: the node instance
-- Returns 1 when the caller must arm the user's dorm: timer (none is known to exist), else 0:
-- an armed timer puts itself back from last_seen, so most connects write nothing else.
local SEEN = KEYS[1]
local OPENED, FIELD = ARGV[1] == 'open', 'conn:' .. ARGV[2]
redis.call('HSET', SEEN, 'last_seen', nowMs())
if OPENED then
  redis.call('HINCRBY', SEEN, FIELD, 1)
elseif redis.call('HINCRBY', SEEN, FIELD, -1) <= 0 then
  redis.call('HDEL', SEEN, FIELD)
end
return redis.call('HSETNX', SEEN, 'armed', '1')
