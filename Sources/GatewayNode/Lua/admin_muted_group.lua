-- Sets when a group's last live mute ends (UNTIL_MS, from moderate.lua; 0: it has none),
-- for the operators' view: the index of groups with mutes (KEYS[1]: group -> that end, ms),
-- in a slot of its own, so it is written after moderate.lua, not inside it. Set exactly,
-- so an unmute or a shorter mute lowers or removes the entry. Two nodes' writes for one
-- group may arrive in either order: VERSION (moderate.lua's) is kept per group in KEYS[2],
-- and a write older than the one applied is dropped, so a late "no mutes" cannot erase a
-- newer mute. The versions expire with the index (with no index left, a late write can only
-- list a group whose mutes the reader then finds ended). With lib_publish (nowMs) and
-- lib_ending. Returns 1 if applied, 0 if it was older.
local MUTED, VERSIONS = KEYS[1], KEYS[2]
local GROUP, UNTIL_MS, VERSION = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local applied = tonumber(redis.call('HGET', VERSIONS, GROUP) or '0')
if VERSION <= applied then return 0 end
redis.call('HSET', VERSIONS, GROUP, ARGV[3])

if UNTIL_MS > 0 then
  keepUntil(MUTED, GROUP, UNTIL_MS, nowMs())
else
  redis.call('ZREM', MUTED, GROUP)
  trimEnded(MUTED, nowMs())
end
local ends = redis.call('PEXPIRETIME', MUTED)
if ends > 0 then redis.call('PEXPIREAT', VERSIONS, ends) else redis.call('DEL', VERSIONS) end
return 1
