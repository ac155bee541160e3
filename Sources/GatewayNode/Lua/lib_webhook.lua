-- Shared by the webhook sender's scripts (webhook_claim, webhook_settle), all in the
-- `{events}` slot. Needs lib_publish (nowMs). Per ordering key (an order id, ...): its
-- undelivered event ids in log order, space-separated, in the QUEUES hash; only the head
-- is ever claimed, so a key's events go one at a time, in order.
-- WH: the key names, set by the script from its KEYS before the first call.
local WH = {queues = false, due = false, leases = false, attempts = false, heads = false, stats = false, dead = false}

-- A given-up event in the dead letters (capped), counted.
local function whDead(id, key, kind, reason, deadCap)
  redis.call('XADD', WH.dead, 'MAXLEN', '~', deadCap, '*', 'id', id, 'key', key, 'type', kind, 'reason', reason)
  redis.call('HINCRBY', WH.stats, 'given_up', 1)
end

-- The time part of a stream id (ms).
local function idMs(id) return tonumber(string.match(id, '^(%d+)-')) end

-- The event `id` leaves the head of `key`'s queue (delivered, or given up with `reason`,
-- which goes to the dead letters with its `kind`); the key's next event is due at once.
-- The key's lease goes with it: a late settle of an earlier attempt finds none.
local function whPop(key, id, now, kind, reason, deadCap)
  local q = redis.call('HGET', WH.queues, key)
  if not q then return false end
  local head, rest = string.match(q, '^(%S+)%s*(.*)$')
  if head ~= id then return false end
  redis.call('HDEL', WH.attempts, id)
  redis.call('HDEL', WH.leases, key)
  redis.call('HINCRBY', WH.stats, 'backlog', -1)
  if reason then
    whDead(id, key, kind, reason, deadCap)
  else
    redis.call('HINCRBY', WH.stats, 'delivered', 1)
  end
  if rest == '' then
    redis.call('HDEL', WH.queues, key)
    redis.call('ZREM', WH.due, key)
    redis.call('ZREM', WH.heads, key)
  else
    redis.call('HSET', WH.queues, key, rest)
    redis.call('ZADD', WH.due, now, key)
    redis.call('ZADD', WH.heads, idMs(string.match(rest, '^(%S+)')), key)
  end
  return true
end
