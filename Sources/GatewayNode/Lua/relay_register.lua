-- Registers an outbox for relaying before a decision that may write to it (cluster only):
-- due DELAY_MS from now on the Redis clock, when any node's sweep relays it if the node
-- that made the decision did not get to.
-- Returns {due, exclusive}: the due time written (ms), and 1 when no other registration
-- of this outbox was pending (absent, or already due: its decision is over), so the
-- node's own relay after the decision may take the registration back (relay_done.lua
-- with this due time). 0: another decision may still be writing under the registration
-- this one just renewed; only the sweep may remove it.
local RELAYS = KEYS[1]
local OUTBOX, DELAY_MS = ARGV[1], tonumber(ARGV[2])

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = now + DELAY_MS
local before = redis.call('ZSCORE', RELAYS, OUTBOX)
local exclusive = 1
if before then
  if tonumber(before) > now then exclusive = 0 end
  -- Strictly later than the one it renews, even within a millisecond: the due time
  -- tells registrations apart (relay_done.lua).
  if due <= tonumber(before) then due = tonumber(before) + 1 end
end
redis.call('ZADD', RELAYS, due, OUTBOX)
return {due, exclusive}
