-- Shared by scripts whose decision pushes to channels in other hash slots (an order's
-- pushes to `user:` channels, a batch of price-drop alerts). Needs lib_publish.
-- One server: the push is published inline; the caller passed the channel's meta and
-- log keys in KEYS. Redis Cluster: those keys live in other slots, so the push goes to
-- the outbox stream of this script's own slot instead, and a node relays it to the
-- channel's slot (relay.lua), idempotently by entry id and in outbox order.

-- Set by the script from its ARGV/KEYS before the first emit:
-- outbox = the outbox key (cluster) or false (one server); ttl, epoch = as for publish.
local EMIT = {outbox = false, ttl = 0, epoch = '', ts = nil, emitted = 0}

local function emit(meta, log, ch, kind, data, size)
  EMIT.emitted = EMIT.emitted + 1
  if EMIT.outbox then
    redis.call('XADD', EMIT.outbox, '*', 'ch', ch, 'type', kind, 'data', data, 'size', size)
  else
    publish(meta, log, ch, kind, data, size, EMIT.ttl, EMIT.epoch, EMIT.ts)
  end
end
