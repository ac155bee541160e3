-- A node's first connection of a user on the channel. With lib_presence.
-- Returns 1 when the node had no live heartbeat on the channel (first user, or the node
-- was taken for dead and may have lost users), else 0.
local MINE = KEYS[3]
local NODE, TTL, USER = ARGV[1], tonumber(ARGV[2]), ARGV[3]

join(MINE, USER)
return heartbeat(MINE, NODE, clockMs(), TTL) and 0 or 1
