-- POST /api/v1/sales: the sale's units set aside from the product's stock, atomically.
-- Needs lib_publish, lib_sale. The sale's pointer ({sale:S}, another slot) is written
-- before, by the store.
-- KEYS: 1 product info, 2 stock, 3 the sale, 4 its units, 5 gw:timers (one server only)
-- ARGV: 1 id, 2 product, 3 price, 4 quantity, 5 starts_at, 6 ends_at, 7 per_user,
--       8 merchant creating ('' the shop), 9 nonce, 10 the sale's timer member,
--       11 when the records expire (ms)
-- Returns {'created' | 'exists', the sale's fields...} (exists: the same sale, a repeat),
-- {'conflict'} (the id is another sale's), {'no_product'}, {'other_merchant'},
-- {'short', keys in stock}. Nothing changes but on 'created'.
local info = redis.call('HMGET', KEYS[1], 'merchant', 'title', 'currency')
if not info[1] then return {'no_product'} end
if ARGV[8] ~= '' and ARGV[8] ~= info[1] then return {'other_merchant'} end
local spec = {'product', 'price', 'quantity', 'starts_at', 'ends_at', 'per_user'}
if redis.call('EXISTS', KEYS[3]) == 1 then
  local have = redis.call('HMGET', KEYS[3], unpack(spec))
  for i = 1, #spec do
    if have[i] ~= ARGV[i + 1] then return {'conflict'} end
  end
  local out = {'exists'}
  for _, v in ipairs(redis.call('HGETALL', KEYS[3])) do out[#out + 1] = v end
  return out
end
local quantity = tonumber(ARGV[4])
local stock = redis.call('LLEN', KEYS[2])
if stock < quantity then return {'short', stock} end
local n = quantity
while n > 0 do
  local ids = redis.call('LPOP', KEYS[2], math.min(n, 1000))
  redis.call('RPUSH', KEYS[4], unpack(ids))
  n = n - #ids
end
local f = {id = ARGV[1], product = ARGV[2], title = info[2] or '', currency = info[3] or '', merchant = info[1],
  price = ARGV[3], quantity = ARGV[4], remaining = ARGV[4], sold = '0', per_user = ARGV[7], starts_at = ARGV[5],
  ends_at = ARGV[6], closed = '0', nonce = ARGV[9], phase = '0', stock_at = '0', stock_dirty = '0'}
local flat = {}
for k, v in pairs(f) do flat[#flat + 1] = k; flat[#flat + 1] = v end
redis.call('HSET', KEYS[3], unpack(flat))
redis.call('PEXPIREAT', KEYS[3], ARGV[11])
redis.call('PEXPIREAT', KEYS[4], ARGV[11])
if KEYS[5] then redis.call('ZADD', KEYS[5], string.format('%d', saleNextDue(f)), ARGV[10]) end
local out = {'created'}
for i = 1, #flat do out[#out + 1] = flat[i] end
return out
