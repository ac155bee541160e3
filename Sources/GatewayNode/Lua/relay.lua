-- Relays one channel's entries of an outbox batch (cluster only), in the channel's slot,
-- in outbox order, in ONE call: within a channel a later entry can never be published
-- while an earlier one failed. With lib_publish.
-- The channel's meta hash keeps, per source outbox, the last entry id relayed to it
-- (`relayed:<outbox key>`), set with each publish: an entry not newer than that was
-- relayed already (by this node or another) and is skipped, so a re-sent batch never
-- doubles a push.
-- Each entry runs under pcall; the first that raises stops the call (later entries are
-- not tried, so none overtakes it). Returns, per entry handled, the offset published or
-- 0 for a repeat; after them, when an entry failed, its error (a string). A server
-- refusing writes (OOM, MISCONF, READONLY, ...) is no entry's fault: that fails the whole
-- call, which the relay tries again with no strike against the entry.
-- A `member.points` entry (lib_points' emitPoints) is a points move, applied here in the
-- user's slot (KEYS[3]: the user's points; with lib_points) under the same mark, not published.
local META, LOG, POINTS = KEYS[1], KEYS[2], KEYS[3]
local OUTBOX, CHANNEL, TTL, EPOCH = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local FIRST_ENTRY, ENTRY_FIELDS = 5, 4 -- then per entry: ID, KIND, DATA, SIZE

local FIELD = 'relayed:' .. OUTBOX
local res = {}
for i = FIRST_ENTRY, #ARGV, ENTRY_FIELDS do
  local id, kind, data, size = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local ok, out = pcall(function()
    local last = redis.call('HGET', META, FIELD)
    if last and not streamIDNewer(id, last) then return 0 end
    local off = 0
    if kind == 'member.points' then
      local move = cjson.decode(data)
      movePoints(POINTS, move.order, move.amount or false, move.ladder, META, LOG, CHANNEL, size, TTL, EPOCH)
    else
      off = publish(META, LOG, CHANNEL, kind, data, size, TTL, EPOCH)
    end
    redis.call('HSET', META, FIELD, id)
    return off
  end)
  if not ok then
    if type(out) == 'table' then out = out.err or 'error' end
    out = tostring(out)
    for _, code in ipairs({'OOM', 'MISCONF', 'READONLY', 'LOADING', 'NOREPLICAS', 'BUSY', 'CLUSTERDOWN'}) do
      if string.sub(out, 1, #code) == code then return redis.error_reply(out) end
    end
    res[#res + 1] = out
    return res
  end
  res[#res + 1] = out
end
return res
