-- The sender's backlog for /metrics and the admin page: events not yet delivered (queued,
-- plus up to 1000 the dispatcher has not reached) and the time of the oldest of them (ms,
-- 0: none). Read only.
local LOG, DISPATCHED, HEADS, STATS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local queued = tonumber(redis.call('HGET', STATS, 'backlog') or '0')
local oldest = 0
local head = redis.call('ZRANGE', HEADS, 0, 0, 'WITHSCORES')
if #head > 0 then oldest = tonumber(head[2]) end
local last = redis.call('GET', DISPATCHED)
local waiting = redis.call('XRANGE', LOG, last and ('(' .. last) or '-', '+', 'COUNT', 1000)
if #waiting > 0 then
  local first = tonumber(string.match(waiting[1][1], '^(%d+)-'))
  if oldest == 0 or first < oldest then oldest = first end
end
return {queued + #waiting, oldest}
