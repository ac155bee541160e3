-- Shared by the presence_*.lua scripts (prepended by LuaScript.embedded).
-- Presence without walking who is online. Per channel (one hash slot, passed in KEYS):
-- - ONLINE: hash user -> number of node instances the user is present through, so HLEN
--   is the number of distinct users online on any node;
-- - NODES: sorted set of node instances by heartbeat expiry (ms, Redis clock);
-- - `on:<node>`: the users present through that node instance (its own key, in KEYS).
-- A node joins/leaves a user when its first/last local connection subscribes/goes, and
-- renews its heartbeat (one ZADD per channel, not per user) every ttl/3. A node instance
-- whose heartbeat expired is dead: presence_reap takes its users out, a bounded number per
-- call, once a renewal or a presence read has named it. Node instances are
-- `<name>.<random>`, so a restarted node never inherits stale entries.
local ONLINE, NODES = KEYS[1], KEYS[2]

-- Keys live a day past the last renewal: long enough for any reap to finish, short
-- enough that a channel whose nodes all died does not linger.
local KEEP = 86400000

local function clockMs()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

local function drop(user)
  if redis.call('HINCRBY', ONLINE, user, -1) <= 0 then redis.call('HDEL', ONLINE, user) end
end

local function join(mine, user)
  if redis.call('SADD', mine, user) == 1 then redis.call('HINCRBY', ONLINE, user, 1) end
end

local function leave(mine, user)
  if redis.call('SREM', mine, user) == 1 then drop(user) end
end

-- Returns whether the node's previous heartbeat was still live.
local function heartbeat(mine, node, now, ttl)
  local old = redis.call('ZSCORE', NODES, node)
  redis.call('ZADD', NODES, now + ttl, node)
  for _, k in ipairs({ONLINE, NODES, mine}) do redis.call('PEXPIRE', k, KEEP) end
  return old and tonumber(old) >= now
end

-- Up to 16 node instances whose heartbeat expired: the caller reaps them with their keys.
local function deadNodes(now)
  return redis.call('ZRANGEBYSCORE', NODES, '-inf', '(' .. now, 'LIMIT', 0, 16)
end
