-- Member points (contract 4.6), kept in the user's slot beside the user's channel.
-- Needs lib_publish. `points` is gw:{user:U}:points (StoreKeys.memberPoints): a hash of
-- `total` and `o:<order id>` -> the amount that order counts. Keyed by order, so an award
-- repeated (a decision or a relay re-run) counts once and a revoke takes back exactly what
-- was counted. Amounts and totals go to Redis as decimal strings, never as Lua numbers
-- (`..` would write 1e13 as "1e+13").
-- `ladder`: decoded JSON [[min_points, name], ...] from fewest points up
-- (MemberLevels.scriptArgument, checked at start); [] for no levels.

-- The name of the level reached at `points` (the last rung at or below), nil below the first.
local function levelAt(ladder, points)
  local found = nil
  for _, rung in ipairs(ladder) do
    if rung[1] <= points then found = rung[2] else break end
  end
  return found
end

-- `amount`: a decimal string to award for `order`, or false to take back what `order`
-- counted. When the level changes, `member.level` {level, previous, points} is published on
-- the user's channel (`meta`, `log`, `ch`) in the same step. Returns the total after.
local function movePoints(points, order, amount, ladder, meta, log, ch, size, ttl, epoch)
  local field = 'o:' .. order
  local before = tonumber(redis.call('HGET', points, 'total') or '0')
  local after = before
  if amount then
    if redis.call('HSETNX', points, field, amount) == 1 then
      after = redis.call('HINCRBY', points, 'total', amount)
    end
  else
    local counted = redis.call('HGET', points, field)
    if counted then
      redis.call('HDEL', points, field)
      after = redis.call('HINCRBY', points, 'total', '-' .. counted)
    end
  end
  local was, now = levelAt(ladder, before), levelAt(ladder, after)
  if was ~= now then
    local function name(n) if n then return cjson.encode(n) end return 'null' end
    publish(meta, log, ch, 'member.level', '{"level":' .. name(now) .. ',"previous":' .. name(was) ..
      ',"points":' .. string.format('%d', after) .. '}', size, ttl, epoch)
  end
  return after
end

-- A decision's points move, in commerce_apply (needs lib_emit before this library; the script
-- sets EMIT.ladder and EMIT.ladderJSON, its text). One server: applied inline, the points key
-- and the user channel's keys are in KEYS. Cluster: they live in the user's slot, so the move
-- goes to the outbox as a `member.points` entry of the user's channel (with the deciding node's
-- ladder), which relay.lua applies there, idempotently by entry id, in outbox order with that
-- channel's pushes.
local function emitPoints(points, meta, log, ch, order, amount, size)
  if EMIT.outbox then
    local data = '{"order":' .. cjson.encode(order)
    if amount then data = data .. ',"amount":"' .. amount .. '"' end
    data = data .. ',"ladder":' .. EMIT.ladderJSON .. '}'
    redis.call('XADD', EMIT.outbox, '*', 'ch', ch, 'type', 'member.points', 'data', data, 'size', size)
  else
    movePoints(points, order, amount, EMIT.ladder, meta, log, ch, size, EMIT.ttl, EMIT.epoch)
  end
end
