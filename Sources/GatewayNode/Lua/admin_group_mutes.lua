-- The live mutes of one group, from the index moderate.lua keeps beside the mutes (read
-- only). KEYS: the group's mutes set (user -> mute end, ms). ARGV: NOW_MS, LIMIT.
-- Returns {user, until, ...}, the longest muted first.
local MUTES = KEYS[1]
local NOW_MS, LIMIT = ARGV[1], tonumber(ARGV[2])

local live = redis.call('ZREVRANGEBYSCORE', MUTES, '+inf', '(' .. NOW_MS, 'WITHSCORES', 'LIMIT', 0, LIMIT)
local out = {}
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = tonumber(live[i + 1])
end
return out
