-- Registers an outbox for relaying before a decision that may write to it (cluster only):
-- due DELAY_MS from now on the Redis clock, when any node's sweep relays it if the node
-- that made the decision did not get to. Returns the due time (ms).
local RELAYS = KEYS[1]
local OUTBOX, DELAY_MS = ARGV[1], tonumber(ARGV[2])

local t = redis.call('TIME')
local due = t[1] * 1000 + math.floor(t[2] / 1000) + DELAY_MS
redis.call('ZADD', RELAYS, due, OUTBOX)
return due
