-- Claims up to COUNT due keys for this node: for each, its head event, leased until now +
-- LEASE_MS (the key's due score moves there, so no other claim sees it meanwhile; a node
-- killed mid-delivery lets it lapse and the key comes due again). A head no longer in the
-- log (trimmed, or lost) is given up at once and the next one taken. With lib_publish and
-- lib_webhook.
-- Returns {claims, missing}: per claim {key, id, token, attempt, fields of the log entry};
-- per head given up as missing {key, id}, for the node to log and count.
local LOG, QUEUES, DUE, LEASES, ATTEMPTS, HEADS, STATS, DEAD =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local COUNT, LEASE_MS, NODE, DEAD_CAP = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
WH.queues, WH.due, WH.leases, WH.attempts, WH.heads, WH.stats, WH.dead = QUEUES, DUE, LEASES, ATTEMPTS, HEADS, STATS, DEAD

local now = tonumber(nowMs())
local out, missing = {}, {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', DUE, '-inf', now, 'LIMIT', 0, COUNT)) do
  while true do
    local queue = redis.call('HGET', QUEUES, key)
    if not queue then
      redis.call('ZREM', DUE, key)
      redis.call('ZREM', HEADS, key)
      break
    end
    local head = string.match(queue, '^(%S+)')
    local entry = redis.call('XRANGE', LOG, head, head)
    if #entry == 0 then
      whPop(key, head, now, '', 'missing from the log', DEAD_CAP)
      missing[#missing + 1] = {key, head}
    else
      local token = NODE .. ':' .. redis.call('HINCRBY', STATS, 'claims', 1)
      redis.call('ZADD', DUE, now + LEASE_MS, key)
      redis.call('HSET', LEASES, key, token .. ' ' .. head)
      local attempt = redis.call('HINCRBY', ATTEMPTS, head, 1)
      out[#out + 1] = {key, head, token, attempt, entry[1][2]}
      break
    end
  end
end
return {out, missing}
