-- Outboxes whose registration is due (Redis clock): {outbox, due, ...}, at most LIMIT.
local RELAYS = KEYS[1]
local LIMIT = ARGV[1]

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local res = {}
local due = redis.call('ZRANGEBYSCORE', RELAYS, '-inf', now, 'WITHSCORES', 'LIMIT', 0, LIMIT)
for i = 1, #due, 2 do
  res[#res + 1] = due[i]
  res[#res + 1] = string.format('%d', tonumber(due[i + 1]))
end
return res
