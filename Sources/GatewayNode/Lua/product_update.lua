-- PATCH a product. With lib_publish. KEYS: its info hash, its product: channel's meta and
-- log (same hash tag). PRICE/TITLE '' keep the value. MERCHANT '' for the shop; otherwise
-- the product must be that merchant's. A changed price is announced on `product:` here;
-- the node then alerts watchers of a lower one in batches.
-- Returns {0, previous price, price, title, currency}, or {-1} without the product, or
-- {-2} when it belongs to another merchant.
local INFO, META, LOG = KEYS[1], KEYS[2], KEYS[3]
local PRODUCT, PRICE, TITLE, MERCHANT, SIZE, TTL, EPOCH =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local f = redis.call('HMGET', INFO, 'price', 'title', 'currency', 'merchant')
if not f[1] then return {-1} end
if MERCHANT ~= '' and f[4] ~= MERCHANT then return {-2} end
local previous = tonumber(f[1])
local price, title = previous, f[2]
if PRICE ~= '' then price = tonumber(PRICE) end
if TITLE ~= '' then title = TITLE end
redis.call('HSET', INFO, 'price', price, 'title', title)
if price ~= previous then
  publish(META, LOG, 'product:' .. PRODUCT, 'product.price', cjson.encode({product = PRODUCT,
    previous = previous, price = price, currency = f[3]}), SIZE, TTL, EPOCH)
end
return {0, previous, price, title, f[3]}
