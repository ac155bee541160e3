-- What the admin API reads in one call (read only). KEYS: the stats hash, the seen set and
-- the muted groups set (group -> latest mute end, ms), one hash tag. With lib_publish (nowMs).
-- ARGV: KEEP_MS (older stats are left out), NOW_MS (the node's clock, which mute ends are
-- on), GROUPS (at most this many muted groups, the longest muted first).
-- Returns {now, {node, seen, stats, ...}, {group, ...}}: now and seen on the Redis clock.
local STATS, SEEN, MUTED = KEYS[1], KEYS[2], KEYS[3]
local KEEP_MS, NOW_MS, GROUPS = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])

local now = tonumber(nowMs())
local seen = redis.call('ZRANGEBYSCORE', SEEN, now - KEEP_MS, '+inf', 'WITHSCORES')
local nodes = {}
for i = 1, #seen, 2 do
  local data = redis.call('HGET', STATS, seen[i])
  if data then
    nodes[#nodes + 1] = seen[i]
    nodes[#nodes + 1] = tonumber(seen[i + 1])
    nodes[#nodes + 1] = data
  end
end
local groups = redis.call('ZREVRANGEBYSCORE', MUTED, '+inf', '(' .. NOW_MS, 'LIMIT', 0, GROUPS)
return {now, nodes, groups}
