-- The admin page's view of deliveries in trouble: how many events were given up (all
-- time) and up to LIMIT ordering keys whose head event has been tried more than once,
-- oldest head first. Only the SCAN oldest keys are looked at, so a receiver down under a
-- huge backlog costs a bounded read (those are the ones retrying anyway). Read only.
-- Returns {given_up, {{key, id, type, attempts, due ms, leased 0/1}, ...}}; `due` is the
-- next attempt, or the lease's end while one is in flight.
local LOG, QUEUES, DUE, LEASES, ATTEMPTS, HEADS, STATS =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local LIMIT, SCAN = tonumber(ARGV[1]), tonumber(ARGV[2])

local givenUp = tonumber(redis.call('HGET', STATS, 'given_up') or '0')
local rows = {}
for _, key in ipairs(redis.call('ZRANGE', HEADS, 0, SCAN - 1)) do
  if #rows >= LIMIT then break end
  local queue = redis.call('HGET', QUEUES, key)
  local head = queue and string.match(queue, '^(%S+)')
  local attempts = head and tonumber(redis.call('HGET', ATTEMPTS, head) or '0') or 0
  if attempts > 1 then
    local eventType = ''
    local entry = redis.call('XRANGE', LOG, head, head)
    if #entry > 0 then
      local fields = entry[1][2]
      eventType = whField(fields, 'type') or ''
    end
    local due = tonumber(redis.call('ZSCORE', DUE, key) or '0')
    rows[#rows + 1] = {key, head, eventType, attempts, due, redis.call('HEXISTS', LEASES, key)}
  end
end
return {givenUp, rows}
