-- A node's stats for the operators' view, written every few seconds (AdminStats.swift).
-- KEYS: the stats hash (node -> stats JSON) and the seen set (node -> time of its last
-- write, ms on the Redis clock), one hash tag. A node not heard of for KEEP_MS is dropped
-- here (a few per call), so nodes that left go away without a sweeper; both keys expire
-- once no node writes. With lib_publish (nowMs). Returns the time written.
local STATS, SEEN = KEYS[1], KEYS[2]
local NODE, DATA, KEEP_MS = ARGV[1], ARGV[2], tonumber(ARGV[3])

local now = tonumber(nowMs())
redis.call('HSET', STATS, NODE, DATA)
redis.call('ZADD', SEEN, now, NODE)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', SEEN, '-inf', '(' .. (now - KEEP_MS), 'LIMIT', 0, 16)) do
  redis.call('HDEL', STATS, gone)
  redis.call('ZREM', SEEN, gone)
end
redis.call('PEXPIRE', STATS, KEEP_MS)
redis.call('PEXPIRE', SEEN, KEEP_MS)
return now
