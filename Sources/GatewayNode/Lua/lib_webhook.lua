-- Shared by the webhook sender's scripts (webhook_dispatch, webhook_settle), all in the
-- `{events}` slot, and by webhook_retrying (whField). Per ordering key (an order id, ...): its
-- undelivered event ids in log order, space-separated, in the QUEUES hash; only the head
-- is ever claimed, so a key's events go one at a time, in order.
-- WH: the key names, set by the script from its KEYS before the first call.
local WH = {log = false, queues = false, due = false, leases = false, attempts = false, heads = false, stats = false,
  dead = false}

-- A given-up event in the dead letters (capped), counted.
local function whDead(id, key, kind, reason, deadCap)
  redis.call('XADD', WH.dead, 'MAXLEN', '~', deadCap, '*', 'id', id, 'key', key, 'type', kind, 'reason', reason)
  redis.call('HINCRBY', WH.stats, 'given_up', 1)
end

-- The time part of a stream id (ms).
local function idMs(id) return tonumber(string.match(id, '^(%d+)-')) end

-- A field of a log entry (its flat name/value array), or nil.
local function whField(fields, name)
  for i = 1, #fields - 1, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

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

-- Leases up to `count` due keys' head events for `node` until now + leaseMs (the key's due
-- score moves there, so no other claim sees it meanwhile; a node killed mid-delivery lets
-- it lapse and the key comes due again). A head no longer in the log (trimmed, or lost) is
-- given up at once and the next one taken.
-- Returns {claims, missing}: per claim {key, id, token, attempt, fields of the log entry};
-- per head given up as missing {key, id}, for the node to log and count.
local function whClaim(count, leaseMs, node, deadCap, now)
  local out, missing = {}, {}
  if count <= 0 then return {out, missing} end
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', WH.due, '-inf', now, 'LIMIT', 0, count)) do
    while true do
      local queue = redis.call('HGET', WH.queues, key)
      if not queue then
        redis.call('ZREM', WH.due, key)
        redis.call('ZREM', WH.heads, key)
        break
      end
      local head = string.match(queue, '^(%S+)')
      local entry = redis.call('XRANGE', WH.log, head, head)
      if #entry == 0 then
        whPop(key, head, now, '', 'missing from the log', deadCap)
        missing[#missing + 1] = {key, head}
      else
        local token = node .. ':' .. redis.call('HINCRBY', WH.stats, 'claims', 1)
        redis.call('ZADD', WH.due, now + leaseMs, key)
        redis.call('HSET', WH.leases, key, token .. ' ' .. head)
        local attempt = redis.call('HINCRBY', WH.attempts, head, 1)
        out[#out + 1] = {key, head, token, attempt, entry[1][2]}
        break
      end
    end
  end
  return {out, missing}
end
