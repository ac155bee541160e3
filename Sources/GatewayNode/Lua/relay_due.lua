-- Outboxes whose registration is due (Redis clock): {outbox, due, ...}, at most LIMIT,
-- those due after AFTER ('' = from the first), so a sweep pages past registrations it
-- could not finish instead of reading the same ones again.
local RELAYS = KEYS[1]
local LIMIT, AFTER = ARGV[1], ARGV[2]

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local min = '-inf'
if AFTER ~= '' then min = '(' .. AFTER end
local res = {}
local due = redis.call('ZRANGEBYSCORE', RELAYS, min, now, 'WITHSCORES', 'LIMIT', 0, LIMIT)
for i = 1, #due, 2 do
  res[#res + 1] = due[i]
  res[#res + 1] = string.format('%d', tonumber(due[i + 1]))
end
return res
