-- The order program's checks and ops (CommerceProgram builds the program, the one place
-- that maps the order effects to these opcodes), shared by commerce_apply.lua and
-- sale_buy.lua. Needs lib_publish, lib_event, lib_emit, lib_points and lib_sale.
-- applySetup reads what every op needs from the caller's ARGV; applyProgram runs a
-- decoded program: every check first, then every op.

-- epoch, ttl: of a channel's first push / its history; outbox: KEYS index of the product's
-- outbox (cluster), 0: inline; retention: the event log's (ms); ladder: lib_points' JSON.
local function applySetup(epoch, ttl, outbox, retention, ladder)
  EMIT.epoch, EMIT.ttl, EMIT.retention = epoch, tonumber(ttl), tonumber(retention)
  EMIT.ladderJSON = ladder or '[]'
  EMIT.ladder = cjson.decode(EMIT.ladderJSON)
  if tonumber(outbox) > 0 then EMIT.outbox = KEYS[tonumber(outbox)] end
end

local function splitIDs(list)
  local out = {}
  if list then for id in string.gmatch(list, '[^,]+') do out[#out + 1] = id end end
  return out
end

local CHECKS = {
  check_version = function(c) return redis.call('HGET', KEYS[c.key], 'version') == c.version end,
  check_absent = function(c) return redis.call('EXISTS', KEYS[c.key]) == 0 end,
  check_stock_at_least = function(c) return redis.call('LLEN', KEYS[c.key]) >= c.count end,
  check_stock_below = function(c) return redis.call('LLEN', KEYS[c.key]) < c.count end,
  check_field = function(c) return (redis.call('HGET', KEYS[c.key], c.field) or '') == c.value end,
}

local function publishBuyers(o)
  local buyers = redis.call('HLEN', KEYS[o.members])
  publish(KEYS[o.meta], KEYS[o.log], o.channel, 'product.buyers',
    '{"product":' .. cjson.encode(o.product) .. ',"buyers":' .. buyers .. '}', o.size, EMIT.ttl, EMIT.epoch)
end

local OPS = {
  save_order = function(o) redis.call('HSET', KEYS[o.key], unpack(o.fields)) end,
  save_payment = function(o) redis.call('HSET', KEYS[o.key], unpack(o.fields)) end,
  allocate_keys = function(o)
    local ids = redis.call('LPOP', KEYS[o.stock], o.count)
    redis.call('HSET', KEYS[o.order], 'keys', table.concat(ids or {}, ','))
  end,
  return_keys = function(o)
    local ids = splitIDs(redis.call('HGET', KEYS[o.order], 'keys'))
    if #ids > 0 then pushAll(KEYS[o.stock], ids) end
    redis.call('HSET', KEYS[o.order], 'keys', '')
  end,
  burn_keys = function(o)
    local ids = splitIDs(redis.call('HGET', KEYS[o.order], 'keys'))
    if #ids > 0 then redis.call('SADD', KEYS[o.burned], unpack(ids)) end
  end,
  -- A restock hold used by its user's order: the held key joins the order's keys (after
  -- any allocated from stock); check_field vouched for the hold, so a missing one takes nothing.
  take_held_key = function(o)
    local id = string.match(redis.call('HGET', KEYS[o.holds], o.user) or '', '^([^|]+)|')
    if not id then return end
    redis.call('HDEL', KEYS[o.holds], o.user)
    redis.call('ZREM', KEYS[o.due], o.user)
    local have = redis.call('HGET', KEYS[o.order], 'keys')
    redis.call('HSET', KEYS[o.order], 'keys', (have and have ~= '') and (have .. ',' .. id) or id)
  end,
  add_member = function(o)
    local n = redis.call('HINCRBY', KEYS[o.members], o.user, o.count)
    if n == o.count then publishBuyers(o) end
  end,
  remove_member = function(o)
    local n = redis.call('HINCRBY', KEYS[o.members], o.user, -o.count)
    if n <= 0 then
      redis.call('HDEL', KEYS[o.members], o.user)
      publishBuyers(o)
    end
  end,
  index_code = function(o) redis.call('SET', KEYS[o.key], KEYS[o.order], 'PX', o.ttl_ms) end,
  push = function(o)
    emit(o.meta and KEYS[o.meta], o.log and KEYS[o.log], o.channel, o.type, o.data, o.size)
  end,
  -- `log`: the event log's KEYS index (one server); absent on a cluster (to the outbox).
  event = function(o) emitEvent(o.log and KEYS[o.log], o.type, o.key, o.at, o.data) end,
  -- `points`, `meta`, `log`: KEYS indexes (one server); absent on a cluster (to the outbox).
  -- `amount` (a decimal string) awards, its absence takes back what the order counted.
  points = function(o)
    emitPoints(o.points and KEYS[o.points], o.meta and KEYS[o.meta], o.log and KEYS[o.log], o.channel, o.order,
      o.amount or false, o.size)
  end,
  -- One server only (a cluster writes timers around the apply, in their own slot).
  schedule_timer = function(o) redis.call('ZADD', KEYS[o.timers], o.due, o.member) end,
  unschedule_timer = function(o) redis.call('ZREM', KEYS[o.timers], o.member) end,
  save_field = function(o) redis.call('HSET', KEYS[o.key], o.field, o.value) end,
  -- One server only (a cluster writes the set ahead of the apply, in its own slot).
  set_add = function(o) redis.call('SADD', KEYS[o.key], o.member) end,
  -- sale_buy.lua checked the sale first (live, enough units, the user's share).
  take_sale_units = function(o)
    local ids = redis.call('LPOP', KEYS[o.units], o.count)
    redis.call('HSET', KEYS[o.order], 'keys', table.concat(ids or {}, ','))
    local left = redis.call('HINCRBY', KEYS[o.sale], 'remaining', -o.count)
    redis.call('HINCRBY', KEYS[o.sale], 'sold', o.count)
    redis.call('HINCRBY', KEYS[o.buyers], o.user, o.count)
    SALE.due = saleDirty(o, clockMs())
    if left <= 0 then
      emit(o.meta and KEYS[o.meta], o.log and KEYS[o.log], o.channel, 'sale.sold_out',
        '{"sale":' .. cjson.encode(o.id) .. ',"remaining":0}', o.size)
    end
  end,
  -- Back to the sale while it is live (not closed, before ends_at), else to the product's
  -- stock (the close already gave the sale's other units back).
  return_sale_units = function(o)
    local ids = splitIDs(redis.call('HGET', KEYS[o.order], 'keys'))
    redis.call('HSET', KEYS[o.order], 'keys', '')
    if #ids == 0 then return end
    local s = KEYS[o.sale]
    local f = redis.call('HMGET', s, 'closed', 'ends_at')
    if f[2] then
      if redis.call('HINCRBY', KEYS[o.buyers], o.user, -#ids) <= 0 then redis.call('HDEL', KEYS[o.buyers], o.user) end
      redis.call('HINCRBY', s, 'sold', -#ids)
    end
    local now = clockMs()
    if f[2] and f[1] ~= '1' and now < tonumber(f[2]) then
      pushAll(KEYS[o.units], ids)
      redis.call('HINCRBY', s, 'remaining', #ids)
      saleDirty(o, now)
    else
      pushAll(KEYS[o.stock], ids)
    end
  end,
}

-- {1, pushes emitted} when applied, {0, index of the failed check} otherwise.
local function applyProgram(PROGRAM)
  for i, c in ipairs(PROGRAM.checks) do
    local check = CHECKS[c.op]
    if not check then return redis.error_reply('commerce_apply: unknown check ' .. tostring(c.op)) end
    if not check(c) then return {0, i} end
  end
  -- Every opcode is known before the first write, so a bad program changes nothing.
  for _, o in ipairs(PROGRAM.ops) do
    if not OPS[o.op] then return redis.error_reply('commerce_apply: unknown op ' .. tostring(o.op)) end
  end
  for _, o in ipairs(PROGRAM.ops) do OPS[o.op](o) end
  return {1, EMIT.emitted}
end
