-- Pushes `product.restock` to users of a product's restock line (or to its new holders).
-- With lib_publish and lib_emit.
-- KEYS[1]: restock line  2: outbox, then (one server only) each user's channel meta and log
-- ARGV[1]: mode (`inline` | `outbox`)  2: user history size  3: ttl  4: epoch  5: data JSON
--      6: '1' = only users still in line (the rest of the line), '' = everyone (holders)
--      7..: users
-- Returns the number sent.
local LINE, OUTBOX = KEYS[1], KEYS[2]
local MODE, SIZE, TTL, EPOCH, DATA, IN_LINE = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] == '1'

EMIT.ttl, EMIT.epoch, EMIT.ts = TTL, EPOCH, nowMs()
if MODE == 'outbox' then EMIT.outbox = OUTBOX end
local sent = 0
for i = 7, #ARGV do
  local user, n = ARGV[i], i - 7
  if not IN_LINE or redis.call('ZSCORE', LINE, user) then
    emit(KEYS[3 + 2 * n], KEYS[4 + 2 * n], 'user:' .. user, 'product.restock', DATA, SIZE)
    sent = sent + 1
  end
end
return sent
