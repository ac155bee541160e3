-- Relays the event entries of an outbox batch (cluster only) to the event log, in the
-- `{events}` slot, in outbox order, in ONE call, as relay.lua does for a channel's pushes:
-- `gw:{events}:relayed` keeps, per source outbox, the last entry id appended, so a re-sent
-- batch never doubles an event. With lib_publish and lib_event.
-- No error here is an entry's own (the node decoded every entry before sending it): an
-- OOM, MISCONF or READONLY fails the whole call, with no strike against any entry, and the
-- relay tries again later; the entries appended before it are skipped then by the mark.
-- Returns, per entry, 1 (appended) or 0 (a repeat): the shape of relay.lua's answer.
local LOG, RELAYED = KEYS[1], KEYS[2]
local OUTBOX, RETENTION = ARGV[1], tonumber(ARGV[2])
local FIRST_ENTRY, ENTRY_FIELDS = 3, 5 -- then per entry: ID, TYPE, KEY, AT, DATA

local res = {}
for i = FIRST_ENTRY, #ARGV, ENTRY_FIELDS do
  local id, kind, key, at, data = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local last = redis.call('HGET', RELAYED, OUTBOX)
  if last and not streamIDNewer(id, last) then
    res[#res + 1] = 0
  else
    appendEvent(LOG, kind, key, at, data, RETENTION)
    redis.call('HSET', RELAYED, OUTBOX, id)
    res[#res + 1] = 1
  end
end
return res
