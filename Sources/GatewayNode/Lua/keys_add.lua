-- Adds card keys to a product's stock: a key id (keyed fingerprint) seen once is never
-- added again. The merchant check is here, so the upload is one round trip.
-- An upload that takes the stock from 0 to N is a restock (contract 4.6): in the same step
-- the first live watchers of the restock line (watch order) each hold one of the new keys
-- until UNTIL (out of the stock, so no other order takes it) and leave the line, the
-- holds' release timer is set (one server; a cluster writes it ahead) and, when someone
-- was in the line, the event `product.restocked` is written (lib_event/lib_emit: inline on
-- one server, outbox on a cluster). The pushes are the node's (restock_notify), once the upload is durable.
-- KEYS[1]: info hash  2: card keys hash  3: stock list  4: restock line  5: watch expiries
--      6: holds hash  7: holds due zset  8: outbox  9: gw:timers (one server)  10: event log (one server)
-- ARGV[1]: the merchant uploading, '' for the shop
-- ARGV[2]: params JSON {now, until, hold_ms, member, timers (KEYS index or 0), log (KEYS index
--          or 0), outbox (KEYS index or 0), retention (event log, ms), event (template: $KEYS,
--          $HOLDS, $STOCK are filled), key (the event's ordering key)}
-- ARGV[3..]: id, sealed key pairs
-- Returns {outcome, added, duplicates, stock, holds, restocked 0|1, title, price, currency, holder...};
-- outcome: ok | no_product | other_merchant (those with four elements).
local INFO, CARD_KEYS, STOCK, LINE, WATCH_EXP, HOLDS, DUE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local MERCHANT = ARGV[1]
local P = cjson.decode(ARGV[2])
-- The line is walked at most this far past the keys given (ended watches are dropped on the way).
local INSPECT_BEYOND = 10000

local owner = redis.call('HGET', INFO, 'merchant')
if not owner then return {'no_product', 0, 0, 0} end
if MERCHANT ~= '' and owner ~= MERCHANT then return {'other_merchant', 0, 0, 0} end
local before = redis.call('LLEN', STOCK)
local added, duplicates = 0, 0
for i = 3, #ARGV, 2 do
  if redis.call('HSETNX', CARD_KEYS, ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('RPUSH', STOCK, ARGV[i])
    added = added + 1
  else
    duplicates = duplicates + 1
  end
end
local restocked = before == 0 and added > 0
local holders = {}
if restocked and P.hold_ms > 0 then
  local after, inspected = '-inf', 0
  while #holders < added and inspected < added + INSPECT_BEYOND do
    -- By score, not rank: the entries dropped on the way shift nothing.
    local page = redis.call('ZRANGEBYSCORE', LINE, after, '+inf', 'WITHSCORES', 'LIMIT', 0, 100)
    if #page == 0 then break end
    for i = 1, #page, 2 do
      local u = page[i]
      after = '(' .. page[i + 1]
      inspected = inspected + 1
      local exp = redis.call('ZSCORE', WATCH_EXP, u)
      if not exp or tonumber(exp) <= P.now then
        redis.call('ZREM', LINE, u)
      elseif redis.call('HEXISTS', HOLDS, u) == 0 then
        -- (A user already holding a key of this product waits for the next restock.)
        holders[#holders + 1] = u
      end
      if #holders == added then break end
    end
  end
  if #holders > 0 then
    local ids = redis.call('LPOP', STOCK, #holders)
    local untilMs = string.format('%d', P['until'])
    for i, u in ipairs(holders) do
      redis.call('HSET', HOLDS, u, ids[i] .. '|' .. untilMs)
      redis.call('ZADD', DUE, untilMs, u)
      redis.call('ZREM', LINE, u)
    end
    if P.timers > 0 then redis.call('ZADD', KEYS[P.timers], untilMs, P.member) end
  end
end
local stock = redis.call('LLEN', STOCK)
-- The event only when someone was waiting: a first upload nobody watched is no news.
if restocked and (#holders > 0 or redis.call('ZCARD', LINE) > 0) then
  EMIT.retention = P.retention
  if P.outbox > 0 then EMIT.outbox = KEYS[P.outbox] end
  local data = string.gsub(string.gsub(string.gsub(P.event, '%$KEYS', added), '%$HOLDS', #holders), '%$STOCK', stock)
  emitEvent(P.log > 0 and KEYS[P.log], 'product.restocked', P.key, string.format('%d', P.now), data)
end
local info = redis.call('HMGET', INFO, 'title', 'price', 'currency')
local res = {'ok', added, duplicates, stock, #holders, restocked and 1 or 0, info[1] or '', tonumber(info[2]) or 0, info[3] or ''}
for _, u in ipairs(holders) do res[#res + 1] = u end
return res
