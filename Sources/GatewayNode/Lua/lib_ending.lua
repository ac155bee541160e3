-- Shared by moderate.lua and admin_muted_group.lua (prepended by LuaScript.embedded): a
-- sorted set of things that end, scored by their end (ms since the epoch). Each write drops
-- the members that ended and lets the set expire with its last one, so it only ever holds
-- what is still live and nothing has to sweep it.

-- Drops what ended by `now` and sets the expiry to the last end. Returns that end, or nil
-- when nothing is left (the set is gone).
local function trimEnded(set, now)
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', set, last[2]) end
  return last[2]
end

local function keepUntil(set, member, untilMs, now)
  redis.call('ZADD', set, untilMs, member)
  return trimEnded(set, now)
end
