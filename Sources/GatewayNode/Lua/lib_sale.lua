-- Flash sales (4.8): what the sale scripts and the order program's sale ops share. Needs
-- lib_publish (nowMs) and, for salePush, lib_emit.
-- The sale hash (gw:{product:P}:sale:S): Store/README.md. `phase` says which timed push
-- went out last (0 none, 1..3 the countdowns at 60, 10 and 1 s, 4 open, 5 closed): each
-- goes out once, whichever node's tick (or how many at once) gets there.

-- What an op learned for the caller: the due time of a `sale.stock` push it made pending.
local SALE = {due = false}
local SALE_COUNTDOWN = {60000, 10000, 1000}
local SALE_STOCK_EVERY = 250

local function clockMs() return tonumber(nowMs()) end

-- RPUSH of any number of ids (unpack has a stack limit).
local function pushAll(key, ids)
  for i = 1, #ids, 1000 do
    redis.call('RPUSH', key, unpack(ids, i, math.min(i + 999, #ids)))
  end
end

-- The sale's remaining changed: a `sale.stock` is pending (at most one per 250 ms). The
-- first change since the last push brings the sale's timer forward (one server: here;
-- a cluster: the store, after the script). Returns that due time, false when one was pending.
-- o: {sale = KEYS index, timers = KEYS index or nil, member = the timer member}.
local function saleDirty(o, now)
  local s = KEYS[o.sale]
  if redis.call('HGET', s, 'stock_dirty') == '1' then return false end
  redis.call('HSET', s, 'stock_dirty', '1')
  local due = math.max(now, tonumber(redis.call('HGET', s, 'stock_at') or '0') + SALE_STOCK_EVERY)
  if o.timers then redis.call('ZADD', KEYS[o.timers], 'LT', string.format('%d', due), o.member) end
  return due
end

-- When the sale is due next: its next phase's time, or its pending `sale.stock`; false
-- when neither is left (closed, nothing pending).
local function saleNextDue(f)
  local phase, starts, ends = tonumber(f.phase or '0'), tonumber(f.starts_at), tonumber(f.ends_at)
  local due = false
  if phase < 3 then due = starts - SALE_COUNTDOWN[phase + 1]
  elseif phase == 3 then due = starts
  elseif phase == 4 then due = ends end
  if f.stock_dirty == '1' and phase < 5 then
    local at = tonumber(f.stock_at or '0') + SALE_STOCK_EVERY
    if not due or at < due then due = at end
  end
  return due
end

local function saleFields(key)
  local flat = redis.call('HGETALL', key)
  local f = {}
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  return f, flat
end

-- The tick of sale_tick.lua and sale_close.lua. KEYS: 1 the sale, 2 its units, 3 its
-- buyers, 4 the product's stock, 5 the outbox (cluster) or gw:timers (one server), 6/7 the
-- `sale:S` channel's meta/log (one server). ARGV: 1 timer member, 2 channel, 3 sale id, 4 epoch,
-- 5 history TTL (s), 6 history size, 7 '1' on a cluster, 8 retention (ms) of the records
-- once closed (past ends_at). Publishes what is due (each phase once), returns the unsold
-- units at the end, and answers {next due or 0, the sale's fields...} ({0} no sale).
-- One server: moves (or removes) the sale's own timer; a cluster's store does that.
local function saleTick(now)
  local cluster = ARGV[7] == '1'
  EMIT.epoch, EMIT.ttl = ARGV[4], tonumber(ARGV[5])
  if cluster then EMIT.outbox = KEYS[5] end
  local timers = (not cluster) and KEYS[5] or nil
  local f = saleFields(KEYS[1])
  if not f.id then
    if timers then redis.call('ZREM', timers, ARGV[1]) end
    return {0}
  end
  local ch, size, id = ARGV[2], tonumber(ARGV[6]), cjson.encode(ARGV[3])
  local function push(kind, data) emit(KEYS[6], KEYS[7], ch, kind, data, size) end
  local phase, starts, ends = tonumber(f.phase or '0'), tonumber(f.starts_at), tonumber(f.ends_at)
  local function setPhase(p) phase = p; f.phase = tostring(p); redis.call('HSET', KEYS[1], 'phase', f.phase) end
  local function stockPush()
    push('sale.stock', '{"sale":' .. id .. ',"remaining":' .. f.remaining .. '}')
    f.stock_dirty, f.stock_at = '0', string.format('%d', now)
    redis.call('HSET', KEYS[1], 'stock_dirty', '0', 'stock_at', f.stock_at)
  end
  if f.closed == '1' or now >= ends then
    if phase < 5 then
      -- The last remaining the sale's watchers saw goes out before it closes.
      if f.stock_dirty == '1' then stockPush() end
      local n = redis.call('LLEN', KEYS[2])
      while n > 0 do
        local ids = redis.call('LPOP', KEYS[2], math.min(n, 1000))
        redis.call('RPUSH', KEYS[4], unpack(ids))
        n = n - #ids
      end
      setPhase(5)
      local reason = f.closed == '1' and 'closed' or 'ended'
      push('sale.closed', '{"sale":' .. id .. ',"reason":"' .. reason .. '","remaining":' .. f.remaining .. '}')
      local expires = string.format('%d', math.max(now, ends) + tonumber(ARGV[8]))
      for i = 1, 3 do redis.call('PEXPIREAT', KEYS[i], expires) end
    end
  elseif now >= starts then
    if phase < 4 then
      setPhase(4)
      push('sale.open', '{"sale":' .. id .. ',"starts_at":' .. f.starts_at .. ',"ends_at":' .. f.ends_at
        .. ',"remaining":' .. f.remaining .. '}')
    end
  else
    -- Only the latest countdown that is due, once.
    local due = 0
    for k = 1, 3 do if now >= starts - SALE_COUNTDOWN[k] then due = k end end
    if due > phase then
      setPhase(due)
      push('sale.countdown', '{"sale":' .. id .. ',"starts_at":' .. f.starts_at .. ',"server_time":' .. string.format('%d', now) .. '}')
    end
  end
  if f.stock_dirty == '1' and phase < 5 and now >= tonumber(f.stock_at or '0') + SALE_STOCK_EVERY then stockPush() end
  local next = saleNextDue(f)
  -- A cluster moves this timer after the reply, where a buy's `ZADD LT` may have come first
  -- and be overwritten: while open it comes back within a second, so no pending push waits long.
  if cluster and phase == 4 and next and next > now + 1000 then next = now + 1000 end
  if timers then
    if next then redis.call('ZADD', timers, string.format('%d', next), ARGV[1]) else redis.call('ZREM', timers, ARGV[1]) end
  end
  local _, flat = saleFields(KEYS[1])
  local out = {next and string.format('%d', next) or 0}
  for i = 1, #flat do out[#out + 1] = flat[i] end
  return out
end
