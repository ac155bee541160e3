-- A consistent snapshot of what an order-core decision is made on: the order, its
-- payment, its product and the product's stock count. Keys reached through a record are
-- read from the record's link fields (written by the store), never built here: they
-- share the entry's slot by construction (Store/README.md, "Keys read from records").
-- KEYS[1]: the entry: an order, a payment, a lookup key (gift code, pay code or
--          idempotency key; its value is the order's key) or a product's info hash
-- KEYS[2]: with ENTRY = 'product' or 'membership', the product's stock list
-- KEYS[3]: with ENTRY = 'membership', the product's memberships hash
-- ARGV[1]: what KEYS[1] is: order | payment | lookup | product | membership
-- ARGV[2]: the user whose validity membership is read (membership entry; for an order, the
--          gift's claimer; absent: the order's owner)
-- Returns {order fields, payment fields, product fields, stock, hold, membership}; records
-- without their link:* fields. hold: the order buyer's restock hold record through
-- link:holds ('' = none); membership: the validity membership record ('' = none). Each is
-- false (a RESP nil) when nothing links to it (an order saved before it existed, or no
-- order). Elements are only ever appended.
local ENTRY_KEY, PRODUCT_STOCK = KEYS[1], KEYS[2]
local ENTRY, MEMBER = ARGV[1], ARGV[2]

-- A record's own fields, and apart from them its link fields (the store's, not the
-- record's: the caller never sees them, and they are read here with no second call).
local function split(flat)
  local fields, links = {}, {}
  for i = 1, #flat, 2 do
    local name = flat[i]
    if string.sub(name, 1, 5) == 'link:' then
      links[name] = flat[i + 1]
    else
      fields[#fields + 1] = name
      fields[#fields + 1] = flat[i + 1]
    end
  end
  return fields, links
end

local orderKey, paymentKey, infoKey, stockKey, membershipsKey, holdsKey
local order, payment, product, stock = {}, {}, {}, 0
-- false, never nil: a nil inside the reply table would cut it short.
local hold, membership = false, false
if ENTRY == 'order' then
  orderKey = ENTRY_KEY
elseif ENTRY == 'payment' then
  paymentKey = ENTRY_KEY
  local links
  payment, links = split(redis.call('HGETALL', paymentKey))
  orderKey = links['link:order']
elseif ENTRY == 'lookup' then
  orderKey = redis.call('GET', ENTRY_KEY)
elseif ENTRY == 'product' then
  infoKey, stockKey = ENTRY_KEY, PRODUCT_STOCK
elseif ENTRY == 'membership' then
  infoKey, stockKey, membershipsKey = ENTRY_KEY, PRODUCT_STOCK, KEYS[3]
else
  return redis.error_reply('commerce_load: unknown entry ' .. tostring(ENTRY))
end

if orderKey then
  local links
  order, links = split(redis.call('HGETALL', orderKey))
  if #order > 0 then
    if not paymentKey then
      paymentKey = links['link:payment']
      if paymentKey then payment = split(redis.call('HGETALL', paymentKey)) end
    end
    infoKey, stockKey = links['link:info'], links['link:stock']
    membershipsKey, holdsKey = links['link:memberships'], links['link:holds']
    if not MEMBER or MEMBER == '' then
      for i = 1, #order, 2 do if order[i] == 'owner' then MEMBER = order[i + 1] end end
    end
  end
end
-- Each link is followed only when present: a record with one link and not another (a
-- partly migrated v1 record, say) reads as missing that part instead of raising.
if infoKey then product = redis.call('HGETALL', infoKey) end
if stockKey then stock = redis.call('LLEN', stockKey) end
if membershipsKey and MEMBER and MEMBER ~= '' then
  membership = redis.call('HGET', membershipsKey, MEMBER) or ''
end
if holdsKey then
  local buyer
  for i = 1, #order, 2 do if order[i] == 'buyer' then buyer = order[i + 1] end end
  hold = buyer and redis.call('HGET', holdsKey, buyer) or ''
end
return {order, payment, product, stock, hold, membership}
