-- Sends a batch of price-drop alerts. With lib_publish and lib_emit.
-- KEYS: the product's watch hash and outbox, then (one server only) each alerted user's
-- channel meta and log. ARGV: mode (`inline` | `outbox`), user history size, ttl, epoch,
-- then per alert: user, record seen, record after, data JSON. A watch changed since it was
-- read is skipped. Returns the number sent.
local WATCH, OUTBOX = KEYS[1], KEYS[2]
local MODE, SIZE, TTL, EPOCH = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

EMIT.ttl, EMIT.epoch, EMIT.ts = TTL, EPOCH, nowMs()
if MODE == 'outbox' then EMIT.outbox = OUTBOX end
local sent = 0
local n = 0
for i = 5, #ARGV, 4 do
  local user, seen, after, data = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HGET', WATCH, user) == seen then
    redis.call('HSET', WATCH, user, after)
    emit(KEYS[3 + 2 * n], KEYS[4 + 2 * n], 'user:' .. user, 'price.drop', data, SIZE)
    sent = sent + 1
  end
  n = n + 1
end
return sent
