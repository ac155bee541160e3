-- Mute, unmute, or announce a deletion in a group. With lib_publish and lib_ending.
-- KEYS: the group channel's meta and log, the user's mute key, the legacy `muted` hash,
-- the group's mutes set (user -> until ms, read by the operators' view).
-- A mute is a key of its own (value: until ms) that expires when the mute ends, so ended
-- mutes never pile up. Returns {1, latest, version}: latest is when the group's last live
-- mute ends after a mute or unmute (0: none), which the muted-groups index is set to;
-- version (the Redis clock in microseconds: moderations of one group run one after another
-- on its master) orders those index writes, which travel separately. latest is 0 for a
-- deletion. Returns {0} when the offset to delete does not exist.
local META, LOG, MUTE, LEGACY_MUTED, MUTES = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local CHANNEL, ACTION, USER, UNTIL_MS, OFFSET, SIZE, TTL, EPOCH =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]

local latest
if ACTION == 'mute' then
  redis.call('SET', MUTE, UNTIL_MS, 'PXAT', UNTIL_MS)
  redis.call('HDEL', LEGACY_MUTED, USER)
  latest = keepUntil(MUTES, USER, UNTIL_MS, nowMs())
elseif ACTION == 'unmute' then
  redis.call('DEL', MUTE)
  redis.call('HDEL', LEGACY_MUTED, USER)
  redis.call('ZREM', MUTES, USER)
  latest = trimEnded(MUTES, nowMs())
else
  local current = tonumber(redis.call('HGET', META, 'offset') or '0')
  if OFFSET < 1 or OFFSET > current then return {0} end
  publish(META, LOG, CHANNEL, 'group.deleted', '{"offset":' .. OFFSET .. '}', SIZE, TTL, EPOCH)
end
local clock = redis.call('TIME')
return {1, tonumber(latest or '0'), tonumber(clock[1]) * 1000000 + tonumber(clock[2])}
