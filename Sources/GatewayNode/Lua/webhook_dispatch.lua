-- Hands the log's new events to the per-key delivery queues, from the `dispatched` cursor
-- on, at most LIMIT per call. Any node may run it at any time: each call is atomic and
-- starts from the cursor the last one left, so an event is queued exactly once. With
-- lib_publish (nowMs) and lib_webhook (an entry without a key cannot be ordered or
-- delivered: it goes to the dead letters, counted, never skipped silently).
-- Returns the number of log entries handled (0: nothing new).
local LOG, DISPATCHED, QUEUES, DUE, HEADS, STATS, DEAD = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local LIMIT, DEAD_CAP = tonumber(ARGV[1]), tonumber(ARGV[2])
if not (LIMIT and DEAD_CAP) then return redis.error_reply('webhook_dispatch: bad arguments') end
WH.stats, WH.dead = STATS, DEAD

local last = redis.call('GET', DISPATCHED)
local entries = redis.call('XRANGE', LOG, last and ('(' .. last) or '-', '+', 'COUNT', LIMIT)
if #entries == 0 then return 0 end
local now = nowMs()
for _, entry in ipairs(entries) do
  local id, fields = entry[1], entry[2]
  local key = whField(fields, 'key')
  if key and key ~= '' then
    local queue = redis.call('HGET', QUEUES, key)
    if queue then
      redis.call('HSET', QUEUES, key, queue .. ' ' .. id)
    else
      redis.call('HSET', QUEUES, key, id)
      redis.call('ZADD', DUE, now, key)
      redis.call('ZADD', HEADS, idMs(id), key)
    end
    redis.call('HINCRBY', STATS, 'backlog', 1)
  else
    whDead(id, '', whField(fields, 'type') or '', 'no ordering key', DEAD_CAP)
  end
  last = id
end
redis.call('SET', DISPATCHED, last)
return #entries
