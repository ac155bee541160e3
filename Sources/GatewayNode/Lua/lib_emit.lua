-- Shared by scripts whose decision pushes to channels in other hash slots (an order's
-- pushes to `user:` channels, a batch of price-drop alerts), and by those that write
-- events (`emitEvent`; needs lib_event too). Needs lib_publish.
-- One server: the push is published inline; the caller passed the channel's meta and
-- log keys in KEYS. Redis Cluster: those keys live in other slots, so the push goes to
-- the outbox stream of this script's own slot instead, and a node relays it to the
-- channel's slot (relay.lua), idempotently by entry id and in outbox order.

-- Set by the script from its ARGV/KEYS before the first emit:
-- outbox = the outbox key (cluster) or false (one server); ttl, epoch = as for publish;
-- retention = how long the event log keeps an event (ms).
local EMIT = {outbox = false, ttl = 0, epoch = '', ts = nil, emitted = 0, retention = 0}

local function emit(meta, log, ch, kind, data, size)
  EMIT.emitted = EMIT.emitted + 1
  if EMIT.outbox then
    redis.call('XADD', EMIT.outbox, '*', 'ch', ch, 'type', kind, 'data', data, 'size', size)
  else
    publish(meta, log, ch, kind, data, size, EMIT.ttl, EMIT.epoch, EMIT.ts)
  end
end

-- An event, in the decision's step: appended to the event log (one server: `log` is its
-- key, in KEYS), or written to the outbox as an `ev` entry that the relay appends to the
-- log in outbox order (cluster). Not counted in `emitted` (that counts pushes).
local function emitEvent(log, kind, key, at, data)
  if EMIT.outbox then
    redis.call('XADD', EMIT.outbox, '*', 'ev', kind, 'key', key, 'at', at, 'data', data)
  else
    appendEvent(log, kind, key, at, data, EMIT.retention)
  end
end
