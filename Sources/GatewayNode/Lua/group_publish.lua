-- A group message: refused while muted, rate limited for buyers, then published. With lib_publish.
-- KEYS: the group channel's meta and log, the sender's mute and rate keys, and the group's
-- legacy `muted` hash (mutes written before they were keys of their own).
-- Returns {offset} or {-1, muted until ms} or {-2, retry after ms}.
local META, LOG, MUTE, RATE, LEGACY_MUTED = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local CHANNEL, USER, LIMITED, LIMIT, WINDOW_MS, DATA, SIZE, TTL, EPOCH =
  ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local untilMs = tonumber(redis.call('GET', MUTE) or '0')
if untilMs == 0 then
  -- Legacy mutes are honoured until they end, then dropped.
  untilMs = tonumber(redis.call('HGET', LEGACY_MUTED, USER) or '0')
  if untilMs > 0 and untilMs <= now then redis.call('HDEL', LEGACY_MUTED, USER) end
end
if untilMs > now then return {-1, untilMs} end
if LIMITED == '1' then
  local n = redis.call('INCR', RATE)
  -- Also when a window key somehow has no expiry: it would rate-limit forever.
  if n == 1 or redis.call('PTTL', RATE) < 0 then redis.call('PEXPIRE', RATE, WINDOW_MS) end
  if n > LIMIT then
    local ttl = redis.call('PTTL', RATE)
    if ttl < 0 then ttl = tonumber(WINDOW_MS) end
    return {-2, ttl}
  end
end
return {publish(META, LOG, CHANNEL, 'group.message', DATA, SIZE, TTL, EPOCH)}
