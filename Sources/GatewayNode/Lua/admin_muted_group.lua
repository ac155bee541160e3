-- Sets when a group's last live mute ends (UNTIL_MS, from moderate.lua; 0: it has none),
-- for the operators' view: the index of groups with mutes (KEYS[1]: group -> that end, ms),
-- in a slot of its own, so it is written after moderate.lua, not inside it. Set exactly,
-- so an unmute or a shorter mute lowers or removes the entry. With lib_publish (nowMs) and
-- lib_ending. Returns 1.
local MUTED = KEYS[1]
local GROUP, UNTIL_MS = ARGV[1], tonumber(ARGV[2])

if UNTIL_MS > 0 then
  keepUntil(MUTED, GROUP, UNTIL_MS, nowMs())
else
  redis.call('ZREM', MUTED, GROUP)
  trimEnded(MUTED, nowMs())
end
return 1
