-- Notes that a group has a mute until UNTIL_MS, for the operators' view: the index of
-- groups with mutes (KEYS[1]: group -> latest mute end, ms), in a slot of its own, so it
-- is written beside moderate.lua, not inside it. With lib_ending. Returns 1.
local MUTED = KEYS[1]
local GROUP, UNTIL_MS = ARGV[1], tonumber(ARGV[2])

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local before = tonumber(redis.call('ZSCORE', MUTED, GROUP) or '0')
keepUntil(MUTED, GROUP, math.max(before, UNTIL_MS), now)
return 1
