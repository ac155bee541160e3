-- A push to any channel (POST /api/v1/publish, node-made pushes). With lib_publish.
-- KEYS: the channel's meta and log, and for a merchant's push to a product: channel the
-- product's info hash (same hash tag). MERCHANT '' publishes unchecked (the shop, the
-- node itself); otherwise the product must exist and belong to that merchant.
-- Returns the offset, or -1 (no such product) or -2 (another merchant's product).
local META, LOG, INFO = KEYS[1], KEYS[2], KEYS[3]
local CHANNEL, KIND, DATA, SIZE, TTL, EPOCH, MERCHANT = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]

if MERCHANT ~= nil and MERCHANT ~= '' then
  local owner = INFO and redis.call('HGET', INFO, 'merchant')
  if not owner then return -1 end
  if owner ~= MERCHANT then return -2 end
end
return publish(META, LOG, CHANNEL, KIND, DATA, SIZE, TTL, EPOCH)
