-- Relays one outbox entry to its channel (cluster only), in the channel's slot. With lib_publish.
-- The channel's meta hash keeps, per source outbox, the last entry id relayed to it
-- (`relayed:<outbox key>`): an entry not newer than that was relayed already (by this
-- node or another) and is skipped, so a retried or concurrent relay never doubles a push.
-- Returns the offset published, or 0 when skipped.
local META, LOG = KEYS[1], KEYS[2]
local OUTBOX, ID, CHANNEL, KIND, DATA, SIZE, TTL, EPOCH =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]

local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local FIELD = 'relayed:' .. OUTBOX
local last = redis.call('HGET', META, FIELD)
if last then
  local ms, seq = parts(ID)
  local lastMs, lastSeq = parts(last)
  if ms < lastMs or (ms == lastMs and seq <= lastSeq) then return 0 end
end
local off = publish(META, LOG, CHANNEL, KIND, DATA, SIZE, TTL, EPOCH)
redis.call('HSET', META, FIELD, ID)
return off
