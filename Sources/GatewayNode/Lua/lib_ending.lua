-- Shared by moderate.lua and admin_muted_group.lua (prepended by LuaScript.embedded): a
-- sorted set of things that end, scored by their end (ms since the epoch). Each write drops
-- the members that ended and lets the set expire with its last one, so it only ever holds
-- what is still live and nothing has to sweep it.
local function keepUntil(set, member, untilMs, now)
  redis.call('ZADD', set, untilMs, member)
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', set, last[2]) end
end
