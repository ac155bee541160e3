-- A consistent snapshot of what an order-core decision is made on: the order, its
-- payment, its product and the product's stock count. Keys reached through a record are
-- read from the record's link fields (written by the store), never built here: they
-- share the entry's slot by construction (Store/README.md, "Keys read from records").
-- KEYS[1]: the entry: an order, a payment, a lookup key (gift code, pay code or
--          idempotency key; its value is the order's key) or a product's info hash
-- KEYS[2]: with ENTRY = 'product', the product's stock list
-- ARGV[1]: what KEYS[1] is: order | payment | lookup | product
-- Returns {order fields, payment fields, product fields, stock}.
local ENTRY_KEY, PRODUCT_STOCK = KEYS[1], KEYS[2]
local ENTRY = ARGV[1]

local orderKey, paymentKey, infoKey, stockKey
if ENTRY == 'order' then
  orderKey = ENTRY_KEY
elseif ENTRY == 'payment' then
  paymentKey = ENTRY_KEY
  orderKey = redis.call('HGET', paymentKey, 'link:order')
elseif ENTRY == 'lookup' then
  orderKey = redis.call('GET', ENTRY_KEY)
elseif ENTRY == 'product' then
  infoKey, stockKey = ENTRY_KEY, PRODUCT_STOCK
else
  return redis.error_reply('commerce_load: unknown entry ' .. tostring(ENTRY))
end

local order = {}
if orderKey then
  order = redis.call('HGETALL', orderKey)
  if #order > 0 then
    local links = redis.call('HMGET', orderKey, 'link:payment', 'link:info', 'link:stock')
    paymentKey = paymentKey or links[1] or nil
    infoKey, stockKey = links[2] or nil, links[3] or nil
  end
end
local payment = {}
if paymentKey then payment = redis.call('HGETALL', paymentKey) end
-- Each link is followed only when present: a record with one link and not another (a
-- partly migrated v1 record, say) reads as missing that part instead of raising.
local product, stock = {}, 0
if infoKey then product = redis.call('HGETALL', infoKey) end
if stockKey then stock = redis.call('LLEN', stockKey) end
return {order, payment, product, stock}
