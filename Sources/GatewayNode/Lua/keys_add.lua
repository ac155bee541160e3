-- Adds card keys to a product's stock: a key id (keyed fingerprint) seen once is never
-- added again. The merchant check is here, so the upload is one round trip.
-- KEYS[1]: the product's info hash; KEYS[2]: its card keys hash (id -> sealed key);
-- KEYS[3]: its stock list
-- ARGV[1]: the merchant uploading, '' for the shop; ARGV[2..]: id, sealed key pairs
-- Returns {outcome, added, duplicates, stock}; outcome: ok | no_product | other_merchant.
local INFO, CARD_KEYS, STOCK = KEYS[1], KEYS[2], KEYS[3]
local MERCHANT = ARGV[1]

local owner = redis.call('HGET', INFO, 'merchant')
if not owner then return {'no_product', 0, 0, 0} end
if MERCHANT ~= '' and owner ~= MERCHANT then return {'other_merchant', 0, 0, 0} end
local added, duplicates = 0, 0
for i = 2, #ARGV, 2 do
  if redis.call('HSETNX', CARD_KEYS, ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('RPUSH', STOCK, ARGV[i])
    added = added + 1
  else
    duplicates = duplicates + 1
  end
end
return {'ok', added, duplicates, redis.call('LLEN', STOCK)}
