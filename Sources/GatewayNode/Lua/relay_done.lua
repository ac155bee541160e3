-- Forgets a registration once its outbox was relayed, unless it was registered again
-- meanwhile (its due time changed): that decision's entries may still be coming.
-- Returns 1 when removed.
local RELAYS = KEYS[1]
local OUTBOX, DUE = ARGV[1], ARGV[2]

local score = redis.call('ZSCORE', RELAYS, OUTBOX)
if score and string.format('%d', tonumber(score)) == DUE then
  redis.call('ZREM', RELAYS, OUTBOX)
  return 1
end
return 0
