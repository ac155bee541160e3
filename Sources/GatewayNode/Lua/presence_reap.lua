-- Forgets at most BUDGET users of dead node instances. With lib_presence.
-- KEYS: online, nodes, then `on:<node>` of each node named in ARGV (same order).
-- A node renewed since it was named is left alone. Returns the number of users dropped.
local BUDGET = tonumber(ARGV[1])

local now = clockMs()
local budget = BUDGET
for i = 3, #KEYS do
  if budget <= 0 then break end
  local key, node = KEYS[i], ARGV[i - 1]
  local expiry = redis.call('ZSCORE', NODES, node)
  if expiry and tonumber(expiry) < now then
    local users = redis.call('SPOP', key, budget)
    for _, u in ipairs(users) do drop(u) end
    budget = budget - #users
    if redis.call('SCARD', key) == 0 then redis.call('ZREM', NODES, node) end
  end
end
return BUDGET - budget
