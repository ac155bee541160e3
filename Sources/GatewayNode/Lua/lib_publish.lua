-- Shared by every script that publishes (prepended by LuaScript.embedded), and for its
-- nowMs() by scripts that read the Redis clock.
-- Appends a push to a channel's history, then announces it on the channel's shard
-- channel: the one way anything is published. `meta` and `log` are the channel's keys
-- (passed in KEYS); its shard channel is the meta key without ':meta' (same hash tag).

local function nowMs()
  local t = redis.call('TIME')
  return string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
end

-- Whether stream id `id` (`<ms>-<seq>`) comes after `than`: the relays' "already relayed"
-- marks. Compared as numbers (Lua's doubles hold every ms of a stream id exactly).
local function streamIDNewer(id, than)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  local lastMs, lastSeq = string.match(than, '^(%d+)-(%d+)$')
  ms, seq, lastMs, lastSeq = tonumber(ms), tonumber(seq), tonumber(lastMs), tonumber(lastSeq)
  return ms > lastMs or (ms == lastMs and seq > lastSeq)
end

-- `ts0`: a batch of publishes may share one clock reading. Returns the offset.
local function publish(meta, log, ch, kind, data, size, ttl, epoch0, ts0)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = epoch0
    redis.call('HSET', meta, 'epoch', epoch)
  end
  local off = redis.call('HINCRBY', meta, 'offset', 1)
  local ts = ts0 or nowMs()
  local push = '{"push":"' .. kind .. '","channel":"' .. ch .. '","offset":' .. off ..
    ',"epoch":"' .. epoch .. '","ts":' .. ts .. ',"data":' .. data .. '}'
  redis.call('XADD', log, 'MAXLEN', '~', size, '0-' .. off, 'd', push)
  redis.call('EXPIRE', meta, ttl)
  redis.call('EXPIRE', log, ttl)
  redis.call('SPUBLISH', string.sub(meta, 1, #meta - 5), off .. ' ' .. epoch .. ' ' .. push)
  return off
end
