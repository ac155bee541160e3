-- Shared by every script that writes to the event log `gw:{events}:log` (contract 4.4):
-- the decision's own script on one server (commerce_apply through lib_emit), the relay of
-- event entries from a slot's outbox on a cluster (events_relay). Needs lib_publish (nowMs).
-- An entry: `type key at data` (at: the decision's time, ms; key: what webhooks are
-- ordered by). Its stream id `<ms>-<seq>` is the event's id: handed out by the log's
-- master, so ids increase. The log is trimmed by age: entries older than `retention` ms
-- go (MINID ~, whole nodes only), never younger ones.
local function appendEvent(log, kind, key, at, data, retention)
  -- A caller that forgot the retention would trim the whole log.
  if not retention or retention <= 0 then error('appendEvent: no retention') end
  local minID = tonumber(nowMs()) - retention
  if minID < 0 then minID = 0 end
  return redis.call('XADD', log, 'MINID', '~', string.format('%d', minID), '*',
    'type', kind, 'key', key, 'at', at, 'data', data)
end
