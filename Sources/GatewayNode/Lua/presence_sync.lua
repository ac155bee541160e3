-- Makes the node's set exactly its local users (after Redis came back, or after the node
-- was taken for dead). With lib_presence. ARGV: node, ttl ms, user1, user2, ...
local MINE = KEYS[3]
local NODE, TTL = ARGV[1], tonumber(ARGV[2])

local want = {}
for i = 3, #ARGV do want[ARGV[i]] = true end
for _, u in ipairs(redis.call('SMEMBERS', MINE)) do
  if want[u] then want[u] = nil else leave(MINE, u) end
end
for u in pairs(want) do join(MINE, u) end
if redis.call('SCARD', MINE) == 0 then
  redis.call('ZREM', NODES, NODE)
else
  heartbeat(MINE, NODE, clockMs(), TTL)
end
return 1
